/* The shim runtime's side that the harness (and only the harness) uses. */
#ifndef PDDGPU_SHIM_RT_H
#define PDDGPU_SHIM_RT_H
#include <pthread.h>
#include <stdarg.h>
#include "kshim.h"

#define SHIM_MAX_THREADS 16
#define SHIM_MAX_HELD 8
#define SHIM_MAX_REPORTS 256
#define SHIM_MAX_LOGS 2000
#define SHIM_MAX_LEAKS 64

enum { T_NEW, T_PARKED, T_RUNNING, T_DONE };
enum { R_ALWAYS, R_LOCK, R_WAIT, R_NEVER };

struct shim_thread {
	int index;
	char name[24];
	char prefix[40];
	char label[192];
	char outer[64], base[80];
	int seq;
	int state, go, started;
	int ready;
	void *ready_ptr;
	unsigned int ready_seen;
	int nosched;
	struct shim_lock *held[SHIM_MAX_HELD];
	int nheld;
	void *last_alloc;
	void (*fn)(void *);
	void *arg;
	pthread_t pt;
};

struct shim_report_rec { char prop[48]; char thread[24]; char msg[480]; };
struct shim_log_rec { char level[8]; char thread[24]; char msg[480]; };
struct shim_extent { u64 start, size; };   /* bytes */

extern struct shim_thread *shim_threads[SHIM_MAX_THREADS];
extern int shim_nthreads;
extern int shim_step_timeout_ms;
extern struct shim_report_rec shim_reports[SHIM_MAX_REPORTS];
extern int shim_nreports;
extern struct shim_log_rec shim_logs[SHIM_MAX_LOGS];
extern int shim_nlogs;
extern int shim_fail_next_init;
extern struct shim_extent shim_fini_leaks[SHIM_MAX_LEAKS];
extern int shim_fini_nleaks;

struct shim_thread *shim_me(void);
/* a report recorded without a dmesg line (the harness's own observations); NULL when the table is full */
struct shim_report_rec *shim_vrecord(const char *prop, const char *fmt, va_list ap);
struct shim_thread *shim_thread_new(const char *name, void (*fn)(void *), void *arg);
int shim_spawn(struct shim_thread *t);
int shim_run_step(struct shim_thread *t);
int shim_enabled(struct shim_thread *t);
void shim_set_prefix(const char *prefix);
void shim_reset(void);
int shim_holds_any_lock(struct shim_thread *t);
int shim_kmem_live_count(void);
void shim_buddy_reset(void);
int shim_buddy_allocated(const struct drm_buddy *mm, struct shim_extent *out, int max);
int shim_mm_allocated(const struct drm_mm *mm, struct shim_extent *out, int max);
#endif
