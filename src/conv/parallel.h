/* What every parallel entry point of src/_conv2d.pyx shares: per-thread scratch. */
#ifndef FASTCONV_CONV_PARALLEL_H
#define FASTCONV_CONV_PARALLEL_H

#include <stdint.h>
#include <stdlib.h>

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

#endif
