/*
 * Logging to stderr, one line per event, with systemd's "<N>" level prefixes so journald
 * records the right priority. The only I/O in shared/, used by master/ and worker/.
 */
#ifndef LH_LOG_H
#define LH_LOG_H

#include <stdarg.h>

enum { LH_LOG_ERR = 3, LH_LOG_WARNING = 4, LH_LOG_NOTICE = 5, LH_LOG_INFO = 6, LH_LOG_DEBUG = 7 };

extern int lh_log_level; /* messages above this level are dropped */

/* Sets the tag printed after the level ("master", "worker 2"). Copies it. */
void lh_log_set_tag(const char *tag);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void lh_log(int level, const char *fmt, ...);

#define lh_log_enabled(level) ((level) <= lh_log_level)

#endif
