#include "buf.h"

#include <stdlib.h>

uint64_t lh_buf_live, lh_buf_allocated;

lh_buf_t *lh_buf_new(size_t len)
{
    lh_buf_t *b = malloc(sizeof(*b) + len);

    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->flags = 0;
    b->len = len;
    lh_buf_live++;
    lh_buf_allocated++;
    return b;
}

void lh_buf_unref(lh_buf_t *b)
{
    if (b != NULL && --b->refs == 0) {
        lh_buf_live--;
        free(b);
    }
}
