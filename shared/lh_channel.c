/*
 * Channel names and space-separated channel lists (the values of subscribe:,
 * unsubscribe: and publish:). A channel becomes part of a NATS subject, so the
 * alphabet leaves out the wildcards '*' and '>' and white space.
 */
#include "lh_channel.h"

static int channel_byte(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '_': case '-': case '=': case '@': case '+': case '~': case ':': case ';':
        return 1;
    default:
        return 0;
    }
}

int lh_channel_valid(const char *s, size_t len, size_t max_len)
{
    size_t i;

    if (max_len > LH_CHANNEL_MAX_LEN)
        max_len = LH_CHANNEL_MAX_LEN;
    if (len == 0 || len > max_len)
        return 0;
    /* No leading, trailing or doubled dot: every token is non-empty. */
    if (s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '.') {
            if (s[i - 1] == '.')
                return 0;
        } else if (!channel_byte(c)) {
            return 0;
        }
    }
    return 1;
}

int lh_channel_next(const char **pos, const char *end, const char **ch, size_t *ch_len)
{
    const char *p = *pos, *start;

    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end) {
        *pos = p;
        return 0;
    }
    start = p;
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    *ch = start;
    *ch_len = (size_t)(p - start);
    *pos = p;
    return 1;
}
