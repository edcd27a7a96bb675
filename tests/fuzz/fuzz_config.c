/* fuzz_config.c: libFuzzer target for the configuration parser (config_parse_len): the
 * input is the file's bytes, NUL bytes and all, in an exact-size buffer. Seeds: the .ini files of
 * tests/configs and conf. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct fsm_params host = {
	    .idle = 7200, .interval = 75, .probes = 9, .probe_bytes = 1};
	static struct config_errors errs;
	struct config cfg;
	char *text = malloc(size ? size : 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	if (config_parse_len("fuzz.ini", text, size, &host, &cfg, &errs) == 0)
		config_free(&cfg);
	free(text);
	return 0;
}
