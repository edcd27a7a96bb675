/* nlwalk.c: netlink message and attribute walks through libmnl (see nlwalk.h). */
#include "nlwalk.h"

#include <limits.h>

const struct nlmsghdr *nlwalk_first(const void *buf, size_t len, int *rest)
{
	*rest = 0;
	if ((uintptr_t)buf % NLWALK_ALIGN != 0 || len > INT_MAX)
		return NULL;
	*rest = (int)len;
	return buf;
}

bool nlwalk_ok(const struct nlmsghdr *h, int rest)
{
	return h && mnl_nlmsg_ok(h, rest) && h->nlmsg_len <= (uint32_t)rest;
}

bool nlwalk_cut(const struct nlmsghdr *h, int rest)
{
	return !h || rest >= (int)MNL_NLMSG_HDRLEN;
}

int nlwalk_attrs(const struct nlmsghdr *h, size_t hdrlen, mnl_attr_cb_t cb, void *data)
{
	const size_t skip = MNL_NLMSG_HDRLEN + MNL_ALIGN(hdrlen);
	const void *payload = (const uint8_t *)h + skip;
	const struct nlattr *attr;
	size_t size;
	int ret = MNL_CB_OK;

	if (h->nlmsg_len <= skip)
		return MNL_CB_OK;
	size = h->nlmsg_len - skip;
	mnl_attr_for_each_payload(payload, size)
	{
		ret = cb(attr, data);
		if (ret <= MNL_CB_STOP)
			return ret;
	}
	/* The walk stops at the first attribute that is not whole: a cut one if a header's
	 * worth of bytes was left. */
	if ((const uint8_t *)payload + size - (const uint8_t *)attr >= (ptrdiff_t)sizeof(*attr))
		return MNL_CB_ERROR;
	return ret;
}
