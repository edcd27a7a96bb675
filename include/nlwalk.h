/* nlwalk.h: walks over the netlink messages of a datagram and the attributes of a message,
 * through libmnl (pure). It adds what libmnl 1.0.4 leaves to its caller, so that a walk
 * never reads past the buffer: the buffer's alignment (libmnl reads the headers in place),
 * a message length of 2^31 or more (mnl_nlmsg_ok compares it as a negative int) and telling
 * a cut message or attribute from the end of the data (libmnl's walks just stop there).
 *
 *	const struct nlmsghdr *h;
 *	int rest;
 *
 *	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest))
 *		... one whole message: h->nlmsg_len bytes, all inside buf ...
 *	if (nlwalk_cut(h, rest))
 *		... the datagram holds a cut or inconsistent message ...
 */
#ifndef KAPROBE_NLWALK_H
#define KAPROBE_NLWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmnl/libmnl.h>

/* The alignment a datagram buffer needs, as netlink's own (_Alignas(uint32_t) or malloc). */
#define NLWALK_ALIGN MNL_ALIGNTO

/* The first message of the datagram buf (len bytes), *rest set for nlwalk_ok and
 * mnl_nlmsg_next. NULL when buf is not NLWALK_ALIGN-aligned or len exceeds INT_MAX: the
 * datagram is refused whole (nlwalk_cut says so). */
const struct nlmsghdr *nlwalk_first(const void *buf, size_t len, int *rest);

/* True when h is a whole message within the rest bytes: mnl_nlmsg_ok, and a length libmnl
 * would take for a negative one refused. */
bool nlwalk_ok(const struct nlmsghdr *h, int rest);

/* After a walk that nlwalk_ok ended: true when it stopped at a cut or inconsistent message
 * (or a refused buffer), false at the end of the data (fewer bytes left than a header). */
bool nlwalk_cut(const struct nlmsghdr *h, int rest);

/* Calls cb (libmnl's attribute callback: MNL_CB_OK goes on, MNL_CB_STOP or MNL_CB_ERROR
 * stops) for each attribute of message h after its fixed header of hdrlen bytes (aligned
 * up), bounded by h->nlmsg_len. Returns the last result of cb (MNL_CB_OK when there are no
 * attributes), or MNL_CB_ERROR when an attribute is cut (shorter than an attribute header,
 * or longer than what is left of the message). */
int nlwalk_attrs(const struct nlmsghdr *h, size_t hdrlen, mnl_attr_cb_t cb, void *data);

#endif
