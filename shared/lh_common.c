#include "lh_common.h"

#include <string.h>

int lh_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lh_strieq(const char *a, size_t len, const char *b)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

        if (y == '\0')
            return 0;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return b[len] == '\0';
}

char *lh_printable(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    if (cap == 0)
        return out;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        size_t need = ch >= 0x20 && ch < 0x7f ? (ch == '"' || ch == '\\' ? 2 : 1) : 4;

        if (o + need + 4 > cap) /* room for this, "..." and the NUL */
            break;
        if (need == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            if (need == 2)
                out[o++] = '\\';
            out[o++] = (char)ch;
        }
    }
    if (i < n && o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
