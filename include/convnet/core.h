/* convnet: status codes, errors, shapes and threads shared by every part of the API. */
#ifndef CONVNET_CORE_H
#define CONVNET_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CN_API __attribute__((visibility("default")))
#else
#define CN_API
#endif

/* Every library call that can fail returns a cn_status; cn_last_error() then says what and where
 * (for example "block1_conv1/kernel: expected (3,3,3,64), file has (64,3,3,3)"). */
typedef enum cn_status {
  CN_OK = 0,
  CN_ERR_ARG,         /* the caller passed something invalid */
  CN_ERR_IO,          /* a file is missing, unreadable, short, or could not be written */
  CN_ERR_FORMAT,      /* a file's content is malformed */
  CN_ERR_UNSUPPORTED, /* valid input that convnet does not handle (a layer class, an option) */
  CN_ERR_SHAPE,       /* shapes do not agree */
  CN_ERR_NOMEM,       /* an allocation failed */
  CN_ERR_LIMIT,       /* input exceeds a safety limit (image dimensions, tensor size) */
  CN_ERR_NETWORK,     /* a download failed */
  CN_ERR_CHECKSUM,    /* a file's checksum differs from the published one */
  CN_STATUS_COUNT
} cn_status;

/* The message of the last failure on this thread ("" when none). Valid until the next call that
 * fails on this thread. */
CN_API const char *cn_last_error(void);
/* A short stable name for a status, e.g. "bad format" for CN_ERR_FORMAT. */
CN_API const char *cn_status_name(cn_status status);

/* Threads used by every parallel kernel; n <= 0 means all cores. One pool serves the library. */
CN_API void cn_set_threads(int n);
CN_API int cn_get_threads(void);

/* The arithmetic of inference (cn_model_set_precision). */
typedef enum cn_precision { CN_PRECISION_FP32 = 0, CN_PRECISION_BF16 = 1 } cn_precision;
/* Idle OpenMP threads spin for milliseconds by default; on a busy machine (more runnable threads
 * than cores) the spinning steals the cores the working threads need, making training several
 * times slower; sleeping at once (OMP_WAIT_POLICY=passive) costs a wake-up between every two
 * layers instead. libgomp reads its settings once, when it loads, so a program calls this first
 * thing in main with its argv: unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, it chooses the
 * spin from what else is runnable when it starts (/proc/loadavg): nothing else, a long one
 * (GOMP_SPINCOUNT=1000000, about 11 ms on an Intel Xeon: workers never sleep between layers);
 * anything else, a short one (GOMP_SPINCOUNT=10000, about 0.1-0.2 ms, then sleep); then it
 * re-executes the program (/proc/self/exe) once. Under valgrind it does nothing (the re-exec
 * would leave the tool). When the exec fails it returns and the program runs on with the
 * default. */
CN_API void cn_prefer_passive_waiting(char **argv);

/* A shape of up to CN_MAX_RANK dimensions, outermost first (NHWC for images). */
#define CN_MAX_RANK 6
typedef struct cn_shape {
  int rank;
  int64_t dim[CN_MAX_RANK];
} cn_shape;

/* Number of elements, or -1 when it overflows int64. */
CN_API int64_t cn_shape_numel(const cn_shape *shape);
/* Formats "(224,224,3)" into buf; returns buf. */
CN_API char *cn_shape_format(const cn_shape *shape, char *buf, size_t cap);

/* The CPU this process runs on, read at run time (one binary serves every x86-64 machine). */
typedef struct cn_cpu_info {
  char name[128]; /* "AMD EPYC 9R14 ...", from /proc/cpuinfo */
  int cores;      /* online logical CPUs */
  int avx2, fma, avx512f, avx512_bf16;
  double ghz;          /* nominal clock: cpufreq's maximum, else /proc/cpuinfo's "cpu MHz" */
  int flops_per_cycle; /* fp32 floating-point operations per cycle and core at peak: FMA units x
                        * vector lanes x 2 (AVX-512 with two FMA units: 64; AMD Zen 4's AVX-512 on
                        * 256-bit units and AVX2 with FMA: 32; without FMA: 16) */
} cn_cpu_info;
CN_API void cn_cpu_detect(cn_cpu_info *cpu);
/* The fp32 peak of `threads` cores in GFLOP/s (flops_per_cycle x ghz x threads), or
 * CONVNET_PEAK_GFLOPS (per core) when set; 0 when the clock is unknown. */
CN_API double cn_cpu_peak_gflops(const cn_cpu_info *cpu, int threads);

#ifdef __cplusplus
}
#endif
#endif
