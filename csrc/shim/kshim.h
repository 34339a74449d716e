/*
 * A userspace stand-in for the few kernel APIs the PDDGPU memory managers use.
 *
 * Every primitive that touches state another thread can see (mutex/spinlock
 * operations, atomic_t/atomic64_t operations, msleep, wait_event, the
 * drm_buddy_* and drm_mm_* calls) is a scheduling point: a managed thread
 * parks there until the driver (Python, through harness.c) grants it the next
 * step, so exactly one C thread runs at a time in an order chosen outside.
 * kzalloc/kfree and the pr_* macros are not points: they touch nothing the
 * model has a step for, and a point there would add steps no trace has.
 *
 * Points carry the model's step labels.  STEP("x") names the next point "x";
 * further points under the same STEP are "x2", "x3" ... (the model's second
 * read of the state word in is_ready is "mgr_check2"); STEP_SUB("_set") names
 * the next point after the last STEP with a suffix.  SCHED_POINT("x") is a
 * point with no operation, where the model has a step the C has no call for.
 *
 * What the kernel's debugging options would report is reported through
 * shim_report(property, ...), named by the model property it breaks:
 * might_sleep (mutex_lock/msleep with a spinlock held), lockdep (a lock taken
 * twice, released by a non-owner), KCSAN (a plain read of a field while
 * another thread holds its lock), kmemleak, and the allocators' BUG_ONs.
 */
#ifndef PDDGPU_KSHIM_H
#define PDDGPU_KSHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;
typedef unsigned int gfp_t;

#define GFP_KERNEL 0u
#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)

#define EINVAL 22
#define ENOMEM 12
#define ENODEV 19
#define ENOSPC 28

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))

/* ---- lists ---------------------------------------------------------------- */
struct list_head { struct list_head *next, *prev; };
#define LIST_HEAD_INIT(n) { &(n), &(n) }
static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = l; l->prev = l; }
static inline bool list_empty(const struct list_head *l) { return l->next == l; }
static inline void list_add_tail(struct list_head *n, struct list_head *h)
{ n->prev = h->prev; n->next = h; h->prev->next = n; h->prev = n; }
static inline void list_add(struct list_head *n, struct list_head *h)
{ n->next = h->next; n->prev = h; h->next->prev = n; h->next = n; }
static inline void list_del(struct list_head *n)
{ n->prev->next = n->next; n->next->prev = n->prev; n->next = n->prev = n; }
#define list_entry(p, t, m) container_of(p, t, m)
#define list_for_each_entry(pos, head, m) \
	for (pos = list_entry((head)->next, __typeof__(*pos), m); &pos->m != (head); \
	     pos = list_entry(pos->m.next, __typeof__(*pos), m))
#define list_for_each_entry_safe(pos, n, head, m) \
	for (pos = list_entry((head)->next, __typeof__(*pos), m), \
	     n = list_entry(pos->m.next, __typeof__(*pos), m); &pos->m != (head); \
	     pos = n, n = list_entry(n->m.next, __typeof__(*n), m))

/* ---- scheduling points --------------------------------------------------- */
void shim_step(const char *label);
void shim_step_sub(const char *suffix);
void shim_point(void);
void shim_nosched_enter(void);
void shim_nosched_exit(void);
#define STEP(l) shim_step(l)
#define STEP_SUB(s) shim_step_sub(s)
#define SCHED_POINT(l) do { shim_step(l); shim_point(); } while (0)
/* an indivisible sequence (the model's atomic_try_cmpxchg loop is one step) */
#define SCHED_ATOMIC_BEGIN(l) do { shim_step(l); shim_point(); shim_nosched_enter(); } while (0)
#define SCHED_ATOMIC_END() shim_nosched_exit()

/* ---- diagnostics ---------------------------------------------------------- */
void shim_report(const char *prop, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void shim_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *shim_current_name(void);
#define pr_err(...) shim_log("ERROR", __VA_ARGS__)
#define pr_warn(...) shim_log("WARN", __VA_ARGS__)
#define pr_info(...) shim_log("INFO", __VA_ARGS__)
#define pr_debug(...) shim_log("DEBUG", __VA_ARGS__)
#define WARN(cond, ...) ({ int __w = !!(cond); if (__w) shim_log("WARN", __VA_ARGS__); __w; })

/* ---- atomics (each operation one scheduling point) ------------------------ */
typedef struct { int counter; } atomic_t;
typedef struct { s64 counter; } atomic64_t;
int atomic_read(const atomic_t *v);
void atomic_set(atomic_t *v, int i);
void atomic_or(int i, atomic_t *v);
void atomic_and(int i, atomic_t *v);
void atomic_inc(atomic_t *v);
void atomic_dec(atomic_t *v);
bool atomic_try_cmpxchg(atomic_t *v, int *old, int new_);
s64 atomic64_read(const atomic64_t *v);
void atomic64_set(atomic64_t *v, s64 i);
void atomic64_add(s64 i, atomic64_t *v);
void atomic64_sub(s64 i, atomic64_t *v);

/* ---- locks ------------------------------------------------------------------- */
struct shim_thread;
struct shim_lock { struct shim_thread *owner; const char *name; int spin; };
struct mutex { struct shim_lock l; };
typedef struct { struct shim_lock l; } spinlock_t;
void shim_lock_init(struct shim_lock *l, const char *name, int spin);
void shim_lock_acquire(struct shim_lock *l);
void shim_lock_release(struct shim_lock *l);
bool shim_lock_held_by_me(const struct shim_lock *l);
#ifndef PDDGPU_DRIFT_VIEW   /* conformance/drift.py reads the preprocessed code with the kernel's names kept */
#define mutex_init(m) shim_lock_init(&(m)->l, #m, 0)
#define mutex_lock(m) shim_lock_acquire(&(m)->l)
#define mutex_unlock(m) shim_lock_release(&(m)->l)
#define mutex_destroy(m) ((void)(m))
#define spin_lock_init(s) shim_lock_init(&(s)->l, #s, 1)
#define spin_lock(s) shim_lock_acquire(&(s)->l)
#define spin_unlock(s) shim_lock_release(&(s)->l)
#define lockdep_assert_held(x) ((void)(x))
#endif

/* KCSAN: a plain read of a field its lock protects, done without the lock */
void shim_kcsan_plain_read(const struct shim_lock *l, const char *what);
#ifndef PDDGPU_DRIFT_VIEW
#define data_race_read(lock, field) (shim_kcsan_plain_read(&(lock)->l, #field), (field))
#endif

/* ---- sleeping ------------------------------------------------------------------ */
void msleep(unsigned int ms);
typedef struct { unsigned int seq; } wait_queue_head_t;
static inline void init_waitqueue_head(wait_queue_head_t *q) { q->seq = 0; }
void wake_up(wait_queue_head_t *q);
void shim_wait_sleep(wait_queue_head_t *q);
/* the condition is evaluated inside the wait's own step (no points in it) */
#ifndef PDDGPU_DRIFT_VIEW
#define wait_event(wq, cond) do { \
	shim_point(); \
	for (;;) { \
		int __c; \
		shim_nosched_enter(); \
		__c = !!(cond); \
		shim_nosched_exit(); \
		if (__c) \
			break; \
		shim_wait_sleep(&(wq)); \
	} \
} while (0)
#endif

/* ---- memory (kmemleak bookkeeping) ------------------------------------------- */
void *kzalloc(size_t size, gfp_t gfp);
void kfree(const void *p);
bool shim_kmem_live(const void *p);

/* ---- drm_buddy ---------------------------------------------------------------- */
#define DRM_BUDDY_RANGE_ALLOCATION (1UL << 0)
struct drm_buddy_block {
	u64 offset;
	unsigned int order;
	int state;                     /* 0 free, 1 allocated, 2 split */
	struct drm_buddy_block *left, *right, *parent;
	struct list_head link;         /* the caller's list of its blocks */
	struct list_head all;          /* shim: every block ever made, freed at reset */
	unsigned int instance;         /* shim: the drm_buddy_init it came from */
};
struct drm_buddy {
	u64 size, avail, chunk_size;
	unsigned int n_roots;
	struct drm_buddy_block *roots[64];
	int magic;                     /* shim: 0 never, 1 live, 2 torn down, 3 failed init */
	unsigned int instance;
	unsigned int inits;            /* shim: successful drm_buddy_init calls on this struct */
};
int drm_buddy_init(struct drm_buddy *mm, u64 size, u64 chunk_size);
void drm_buddy_fini(struct drm_buddy *mm);
int drm_buddy_alloc_blocks(struct drm_buddy *mm, u64 start, u64 end, u64 size, u64 min_block_size,
			   struct list_head *blocks, unsigned long flags);
void drm_buddy_free_list(struct drm_buddy *mm, struct list_head *objects, unsigned int flags);
static inline u64 drm_buddy_block_offset(const struct drm_buddy_block *b) { return b->offset; }
static inline u64 drm_buddy_block_size(const struct drm_buddy *mm, const struct drm_buddy_block *b)
{ return mm->chunk_size << b->order; }

/* ---- drm_mm ------------------------------------------------------------------- */
enum drm_mm_insert_mode { DRM_MM_INSERT_BEST = 0, DRM_MM_INSERT_LOW, DRM_MM_INSERT_HIGH };
struct drm_mm;
struct drm_mm_node {
	u64 start, size;
	struct list_head node_list;
	struct drm_mm *mm;
	int allocated;
	unsigned int instance;         /* shim: the drm_mm_init it came from */
};
struct drm_mm {
	/* size and allocated_size are not fields of the kernel's struct drm_mm: the
	 * document's GTT code reads them (see option gtt_mm_fields); the shim has
	 * them with the meaning the model gives them: pages of the aperture, pages
	 * held by allocated nodes */
	u64 start, size, allocated_size;
	struct list_head nodes;        /* allocated nodes by start */
	int magic;
	unsigned int instance;
	unsigned int inits;
};
/* the kernel's drm_mm_init returns void; the document assigns its result, so the
 * shim returns int (0, or -ENOMEM under fault injection) */
int drm_mm_init(struct drm_mm *mm, u64 start, u64 size);
void drm_mm_takedown(struct drm_mm *mm);
int drm_mm_insert_node_in_range(struct drm_mm *mm, struct drm_mm_node *node, u64 size, u64 alignment,
				unsigned long color, u64 range_start, u64 range_end, enum drm_mm_insert_mode mode);
void drm_mm_remove_node(struct drm_mm_node *node);
static inline bool drm_mm_node_allocated(const struct drm_mm_node *n) { return n->allocated; }
static inline bool drm_mm_clean(const struct drm_mm *mm) { return mm->magic != 1 || list_empty(&mm->nodes); }

#endif
