/* fuzz_statusview.c: libFuzzer target for the state-file reader of `kaprobed -s`
 * (statusview_parse): the input is the file. Seeds: tests/fuzz/corpus/statusview. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "statusview.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const struct statusview_row *row, void *arg)
{
	size_t *n = arg;

	/* Every string must be terminated within its buffer. */
	if (strnlen(row->rule, STATUSVIEW_STR) == STATUSVIEW_STR ||
	    strnlen(row->local, STATUSVIEW_STR) == STATUSVIEW_STR ||
	    strnlen(row->remote, STATUSVIEW_STR) == STATUSVIEW_STR ||
	    strnlen(row->state, STATUSVIEW_STR) == STATUSVIEW_STR ||
	    strnlen(row->verdict, STATUSVIEW_STR) == STATUSVIEW_STR)
		abort();
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct statusview_header h;
	char err[256];
	char *text = malloc(size ? size : 1);
	size_t n = 0;

	if (!text)
		return 0;
	memcpy(text, data, size);
	(void)statusview_parse(text, size, &h, one, &n, err, sizeof(err));
	free(text);
	return 0;
}
