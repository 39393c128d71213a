#include "lh_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lh_log_level = LH_LOG_INFO;
static char tag[32] = "lhttpd";

void lh_log_set_tag(const char *t)
{
    snprintf(tag, sizeof(tag), "%s", t);
}

/* Formats the whole line first and writes it with one write(2), so lines from several
 * processes sharing stderr never interleave. */
void lh_log(int level, const char *fmt, ...)
{
    char line[2048];
    int n, m, saved = errno;
    va_list ap;

    if (level > lh_log_level)
        return;
    n = snprintf(line, sizeof(line), "<%d>%s: ", level, tag);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing useful to do when stderr is gone. */
    }
    errno = saved;
}
