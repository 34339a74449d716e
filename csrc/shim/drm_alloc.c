/*
 * Small allocators behind the drm_buddy_* and drm_mm_* calls the managers make,
 * enough for the traces' sizes (a buddy tree of up to 2^20 pages, a drm_mm of a
 * few pages), with the placement the model uses: the buddy serves one block of
 * a power-of-two size, the lowest free aligned one (RANGE_ALLOCATION over the
 * whole aperture); drm_mm inserts into the lowest hole (DRM_MM_INSERT_LOW).
 *
 * Misuse that the kernel would crash on or BUG_ON is reported and refused
 * instead: any call on a torn-down or failed allocator, a block freed into
 * another instance than the one it came from, a block freed twice, an init
 * over a live instance.  Block metadata lives until shim_reset, so a stale
 * pointer held by a manager can still be inspected.
 */
#include <stdlib.h>
#include "kshim.h"
#include "shim_rt.h"

enum { M_NEVER, M_LIVE, M_DEAD, M_FAILED };
static unsigned int next_instance;
static struct list_head all_blocks = LIST_HEAD_INIT(all_blocks);

static void record_leak(u64 start, u64 size)
{
	if (shim_fini_nleaks < SHIM_MAX_LEAKS)
		shim_fini_leaks[shim_fini_nleaks++] = (struct shim_extent){ start, size };
}

static const char *why_dead(int magic)
{
	return magic == M_FAILED ? "left uninitialised by a failed init" : magic == M_DEAD ? "torn down" :
	       "never initialised";
}

/* ---- drm_buddy ------------------------------------------------------------------ */
static struct drm_buddy_block *new_block(u64 offset, unsigned int order, struct drm_buddy_block *parent,
					 unsigned int instance)
{
	struct drm_buddy_block *b = calloc(1, sizeof(*b));
	b->offset = offset;
	b->order = order;
	b->parent = parent;
	b->instance = instance;
	INIT_LIST_HEAD(&b->link);
	list_add_tail(&b->all, &all_blocks);
	return b;
}

void shim_buddy_reset(void)
{
	while (!list_empty(&all_blocks)) {
		struct drm_buddy_block *b = list_entry(all_blocks.next, struct drm_buddy_block, all);
		list_del(&b->all);
		free(b);
	}
	next_instance = 0;
}

static int count_allocated(struct drm_buddy_block *b, struct shim_extent *out, int max, int n, u64 cs)
{
	if (!b)
		return n;
	if (b->state == 1) {
		if (out && n < max)
			out[n] = (struct shim_extent){ b->offset, cs << b->order };
		return n + 1;
	}
	if (b->state == 2) {
		n = count_allocated(b->left, out, max, n, cs);
		n = count_allocated(b->right, out, max, n, cs);
	}
	return n;
}

int shim_buddy_allocated(const struct drm_buddy *mm, struct shim_extent *out, int max)
{
	int n = 0;
	if (mm->magic != M_LIVE)
		return 0;
	for (unsigned int i = 0; i < mm->n_roots; i++)
		n = count_allocated(mm->roots[i], out, max, n, mm->chunk_size);
	return n;
}

int drm_buddy_init(struct drm_buddy *mm, u64 size, u64 chunk_size)
{
	shim_point();
	if (mm->magic == M_LIVE) {
		int live = shim_buddy_allocated(mm, NULL, 0);
		if (live)
			shim_report("no_reinit_of_live_allocator",
				    "drm_buddy_init over an allocator that holds %d live block(s)", live);
		shim_report("no_buddy_metadata_leak",
			    "kmemleak: drm_buddy_init over an initialised drm_buddy: the old instance's blocks and free "
			    "lists are never freed");
	}
	if (shim_fail_next_init) {
		shim_fail_next_init = 0;
		mm->magic = M_FAILED;
		mm->n_roots = 0;
		mm->size = mm->avail = 0;
		return -ENOMEM;
	}
	if (chunk_size < PAGE_SIZE || (chunk_size & (chunk_size - 1)) || size < chunk_size)
		return -EINVAL;
	size &= ~(chunk_size - 1);
	mm->size = mm->avail = size;
	mm->chunk_size = chunk_size;
	mm->instance = ++next_instance;
	mm->n_roots = 0;
	u64 off = 0, left = size;
	while (left && mm->n_roots < 64) {
		unsigned int order = 63 - __builtin_clzll(left / chunk_size);
		mm->roots[mm->n_roots++] = new_block(off, order, NULL, mm->instance);
		off += chunk_size << order;
		left -= chunk_size << order;
	}
	mm->magic = M_LIVE;
	mm->inits++;
	return 0;
}

void drm_buddy_fini(struct drm_buddy *mm)
{
	shim_point();
	shim_fini_nleaks = 0;
	if (mm->magic != M_LIVE)
		return;
	struct shim_extent ext[SHIM_MAX_LEAKS];
	int n = shim_buddy_allocated(mm, ext, SHIM_MAX_LEAKS);
	for (int i = 0; i < n && i < SHIM_MAX_LEAKS; i++)
		record_leak(ext[i].start, ext[i].size);
	if (n)      /* the kernel: WARN_ON(mm->avail != mm->size) */
		shim_log("WARN", "drm_buddy_fini: %d block(s) still allocated, avail %llu of %llu", n,
			 (unsigned long long)mm->avail, (unsigned long long)mm->size);
	mm->magic = M_DEAD;
	mm->avail = mm->size;
}

static struct drm_buddy_block *lowest_free(struct drm_buddy_block *b, unsigned int order)
{
	if (!b || b->order < order)
		return NULL;
	if (b->state == 0)
		return b;
	if (b->state == 1)
		return NULL;
	struct drm_buddy_block *x = lowest_free(b->left, order);
	return x ? x : lowest_free(b->right, order);
}

int drm_buddy_alloc_blocks(struct drm_buddy *mm, u64 start, u64 end, u64 size, u64 min_block_size,
			   struct list_head *blocks, unsigned long flags)
{
	shim_point();
	(void)flags;
	if (mm->magic != M_LIVE) {
		shim_report("no_allocator_use_after_fini", "%s calls drm_buddy_alloc_blocks on an allocator %s",
			    shim_current_name(), why_dead(mm->magic));
		return -EINVAL;
	}
	/* only what the manager asks: one power-of-two block over the whole range */
	if (size != min_block_size || (size & (size - 1)) || size < mm->chunk_size || start != 0 || end > mm->size)
		return -EINVAL;
	unsigned int order = 63 - __builtin_clzll(size / mm->chunk_size);
	struct drm_buddy_block *b = NULL;
	for (unsigned int i = 0; i < mm->n_roots && !b; i++)
		b = lowest_free(mm->roots[i], order);
	if (!b)
		return -ENOSPC;
	while (b->order > order) {
		b->state = 2;
		b->left = new_block(b->offset, b->order - 1, b, mm->instance);
		b->right = new_block(b->offset + (mm->chunk_size << (b->order - 1)), b->order - 1, b, mm->instance);
		b = b->left;
	}
	b->state = 1;
	mm->avail -= size;
	list_add_tail(&b->link, blocks);
	return 0;
}

void drm_buddy_free_list(struct drm_buddy *mm, struct list_head *objects, unsigned int flags)
{
	shim_point();
	(void)flags;
	if (mm->magic != M_LIVE) {
		shim_report("no_allocator_use_after_fini", "%s frees into a drm_buddy %s", shim_current_name(),
			    why_dead(mm->magic));
		INIT_LIST_HEAD(objects);
		return;
	}
	struct drm_buddy_block *b, *n;
	list_for_each_entry_safe(b, n, objects, link) {
		list_del(&b->link);
		if (b->instance != mm->instance) {
			shim_report("no_foreign_free",
				    "%s frees [%#llx, %#llx) from drm_buddy instance %u into instance %u, re-initialised "
				    "since", shim_current_name(), (unsigned long long)b->offset,
				    (unsigned long long)(b->offset + (mm->chunk_size << b->order)), b->instance,
				    mm->instance);
			continue;
		}
		if (b->state != 1) {
			shim_report("no_double_free", "%s frees [%#llx, ...), which the allocator does not hold",
				    shim_current_name(), (unsigned long long)b->offset);
			continue;
		}
		b->state = 0;
		mm->avail += mm->chunk_size << b->order;
		/* merge with free buddies (children stay in all_blocks until reset) */
		while (b->parent && b->parent->left->state == 0 && b->parent->right->state == 0) {
			b = b->parent;
			b->state = 0;
			b->left = b->right = NULL;
		}
	}
	INIT_LIST_HEAD(objects);
}

/* ---- drm_mm ----------------------------------------------------------------------- */
int shim_mm_allocated(const struct drm_mm *mm, struct shim_extent *out, int max)
{
	int n = 0;
	struct drm_mm_node *x;
	if (mm->magic != M_LIVE)
		return 0;
	list_for_each_entry(x, &mm->nodes, node_list) {
		if (out && n < max)
			out[n] = (struct shim_extent){ x->start << PAGE_SHIFT, x->size << PAGE_SHIFT };
		n++;
	}
	return n;
}

int drm_mm_init(struct drm_mm *mm, u64 start, u64 size)
{
	shim_point();
	if (mm->magic == M_LIVE && !list_empty(&mm->nodes))
		shim_report("no_reinit_of_live_allocator", "drm_mm_init over an allocator that holds %d live node(s)",
			    shim_mm_allocated(mm, NULL, 0));
	if (shim_fail_next_init) {
		shim_fail_next_init = 0;
		mm->magic = M_FAILED;
		return -ENOMEM;
	}
	mm->start = start;
	mm->size = size;
	mm->allocated_size = 0;
	INIT_LIST_HEAD(&mm->nodes);
	mm->instance = ++next_instance;
	mm->magic = M_LIVE;
	mm->inits++;
	return 0;
}

void drm_mm_takedown(struct drm_mm *mm)
{
	shim_point();
	shim_fini_nleaks = 0;
	if (mm->magic != M_LIVE)
		return;
	if (!list_empty(&mm->nodes)) {
		struct drm_mm_node *x;
		list_for_each_entry(x, &mm->nodes, node_list)
			record_leak(x->start << PAGE_SHIFT, x->size << PAGE_SHIFT);
		shim_log("WARN", "drm_mm_takedown: memory manager not clean during takedown (%d node(s))",
			 shim_mm_allocated(mm, NULL, 0));
	}
	mm->magic = M_DEAD;     /* allocated_size stays: a plain field, readable after takedown */
}

int drm_mm_insert_node_in_range(struct drm_mm *mm, struct drm_mm_node *node, u64 size, u64 alignment,
				unsigned long color, u64 range_start, u64 range_end, enum drm_mm_insert_mode mode)
{
	shim_point();
	(void)alignment; (void)color; (void)mode;
	if (mm->magic != M_LIVE) {
		shim_report("no_allocator_use_after_fini", "%s calls drm_mm_insert_node_in_range on a drm_mm %s",
			    shim_current_name(), why_dead(mm->magic));
		return -EINVAL;
	}
	if (!size)
		return -EINVAL;
	u64 lo = range_start > mm->start ? range_start : mm->start;
	u64 hi = range_end < mm->start + mm->size ? range_end : mm->start + mm->size;
	struct drm_mm_node *x;
	struct list_head *before = &mm->nodes;
	u64 at = lo;
	list_for_each_entry(x, &mm->nodes, node_list) {     /* lowest hole first */
		if (x->start >= at + size)
			break;
		if (x->start + x->size > at)
			at = x->start + x->size;
		before = &x->node_list;
	}
	if (at + size > hi)
		return -ENOSPC;
	node->start = at;
	node->size = size;
	node->mm = mm;
	node->allocated = 1;
	node->instance = mm->instance;
	list_add(&node->node_list, before);
	mm->allocated_size += size;
	return 0;
}

void drm_mm_remove_node(struct drm_mm_node *node)
{
	shim_point();
	struct drm_mm *mm = node->mm;
	if (!mm || !node->allocated) {
		shim_report("no_double_free", "%s removes a drm_mm node that is not allocated", shim_current_name());
		return;
	}
	if (mm->magic != M_LIVE) {
		shim_report("no_allocator_use_after_fini", "%s removes a node from a drm_mm %s", shim_current_name(),
			    why_dead(mm->magic));
		return;
	}
	if (node->instance != mm->instance) {
		shim_report("no_foreign_free", "%s removes pages [%llu, %llu) of drm_mm instance %u from instance %u, "
			    "re-initialised since", shim_current_name(), (unsigned long long)node->start,
			    (unsigned long long)(node->start + node->size), node->instance, mm->instance);
		return;
	}
	list_del(&node->node_list);
	node->allocated = 0;
	mm->allocated_size -= node->size;
}
