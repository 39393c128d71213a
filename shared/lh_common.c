#include "lh_common.h"

#include <string.h>

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
