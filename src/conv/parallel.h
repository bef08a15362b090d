/* The one parallel loop every entry point of src/_conv2d.pyx runs (written once here):
 * the thread count, each thread's scratch buffers, the split of the work items, and the
 * error flag.
 *
 * Work items never depend on the thread count (strips of output pixels, whole images,
 * fixed groups of images), and each item is computed by one thread in a fixed order, so
 * results are bit-identical for any number of threads.  Items are handed out
 * dynamically, which keeps both cores busy when another process takes one of them.
 * Without OpenMP the pragmas are ignored and the loop runs serially. */
#ifndef FASTCONV_CONV_PARALLEL_H
#define FASTCONV_CONV_PARALLEL_H

#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include "omp_shim.h"

/* 64-byte aligned scratch (portable: the original pointer is kept just before). */
static void *fc_alloc(size_t bytes)
{
    char *raw = (char *)malloc(bytes + 64 + sizeof(void *));
    uintptr_t a;
    if (raw == NULL)
        return NULL;
    a = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

static void fc_free(void *p)
{
    if (p != NULL)
        free(((void **)p)[-1]);
}

/* Below this many multiply-adds a call runs on one thread: waking a second thread costs
 * more than the work saves (docs/design/algorithms.md). */
#define FC_MIN_PARALLEL_MACS 4.0e5

/* Threads for a call of `macs` multiply-adds split into `items` work items, read at call
 * time (OMP_NUM_THREADS, threadpoolctl and the fork guard of omp_shim.h hold). */
static int fc_threads(double macs, ptrdiff_t items)
{
    int t = fc_get_max_threads();
    if (macs < FC_MIN_PARALLEL_MACS)
        return 1;
    if (items < t)
        t = (int)items;
    return t > 1 ? t : 1;
}

/* Parts per group for a call of `macs` multiply-adds made of `groups` groups of work,
 * each of which can be cut into up to `most` parts that give the same bits however it
 * is cut (columns, entries that share no sums): enough parts that the items cover the
 * call's threads, no more (each part repeats some of its group's set-up work). */
static ptrdiff_t fc_parts_per_group(double macs, ptrdiff_t groups, ptrdiff_t most)
{
    ptrdiff_t t, want;
    if (most <= 1 || groups < 1)  /* (one part: also where a group has no work) */
        return 1;
    t = fc_threads(macs, groups * most);
    want = (t + groups - 1) / groups;
    return want < most ? want : most;
}

#define FC_SCRATCH_MAX 4

/* A parallel loop: items 0 .. items - 1 on `threads` threads, handed out `chunk` at a
 * time (dynamic schedule; chunk 0: a static split), each thread with its own scratch
 * buffers scratch[0 .. nscratch - 1] of bytes[i] bytes (64-byte aligned). */
typedef struct {
    ptrdiff_t items;
    int threads;
    int chunk;
    int nscratch;
    size_t bytes[FC_SCRATCH_MAX];
} fc_loop;

/* Work item `it` of a loop; ctx: the entry point's arguments. */
typedef void (*fc_item_fn)(const void *ctx, ptrdiff_t it, void *const *scratch);

/* Runs the loop; 0, or FC_ENOMEM when a thread could not allocate its scratch (the
 * items of that thread are then skipped: the caller raises MemoryError). */
#define FC_ENOMEM 1
#define FC_ENOMEM_TABLE 2  /* an entry point's shared table could not be allocated */
static int fc_parallel_for(const fc_loop *lp, fc_item_fn item, const void *ctx)
{
    int fail = 0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(lp->threads)
#endif
    {
        void *s[FC_SCRATCH_MAX] = {NULL, NULL, NULL, NULL};
        ptrdiff_t it;
        int i, ok = 1;
        for (i = 0; i < lp->nscratch; i++)
            if ((s[i] = fc_alloc(lp->bytes[i])) == NULL)
                ok = 0;
        if (!ok) {
#if defined(_OPENMP)
#pragma omp atomic write
#endif
            fail = FC_ENOMEM;
        }
        if (lp->chunk > 0) {
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, lp->chunk)
#endif
            for (it = 0; it < lp->items; it++)
                if (ok)
                    item(ctx, it, s);
        } else {
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
            for (it = 0; it < lp->items; it++)
                if (ok)
                    item(ctx, it, s);
        }
        for (i = 0; i < lp->nscratch; i++)
            fc_free(s[i]);
    }
    return fail;
}

/* A loop of `items` items on fc_threads(macs, items) threads, no scratch yet. */
static fc_loop fc_loop_of(double macs, ptrdiff_t items, int chunk)
{
    fc_loop lp;
    memset(&lp, 0, sizeof lp);
    lp.items = items;
    lp.threads = fc_threads(macs, items);
    lp.chunk = chunk;
    return lp;
}

/* Adds a per-thread scratch buffer of `bytes` bytes to the loop. */
static void fc_scratch(fc_loop *lp, size_t bytes)
{
    lp->bytes[lp->nscratch++] = bytes;
}

/* Calls f_d or f_f by the dtype (dbl: float64) with the same arguments: the entry
 * points' pointers come from src/_conv2d.pyx as void pointers. */
#define FC_BY_DTYPE(dbl, fn, ...) ((dbl) ? fn##_d(__VA_ARGS__) : fn##_f(__VA_ARGS__))

#endif
