/* The CPU at run time: model name, vector extensions and clock from /proc/cpuinfo and cpufreq,
 * and from them the fp32 peak that `--profile` measures layers against. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convnet/core.h"

/* The value of "key : value" lines of /proc/cpuinfo for the first CPU, into out. */
static int cpuinfo_field(const char *key, char *out, size_t cap) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[8192];
  size_t n = strlen(key);
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, n) != 0 || (line[n] != ' ' && line[n] != '\t' && line[n] != ':'))
      continue;
    const char *v = strchr(line, ':');
    if (!v) continue;
    for (v++; *v == ' '; v++) {
    }
    snprintf(out, cap, "%s", v);
    out[strcspn(out, "\n")] = 0;
    found = 1;
  }
  fclose(f);
  return found;
}

static int has_flag(const char *flags, const char *name) {
  size_t n = strlen(name);
  for (const char *p = flags; (p = strstr(p, name)) != NULL; p += n)
    if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
  return 0;
}

static double clock_ghz(void) {
  FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
  long khz = 0;
  if (f) {
    if (fscanf(f, "%ld", &khz) != 1) khz = 0;
    fclose(f);
  }
  if (khz > 0) return (double)khz / 1e6;
  char mhz[64];
  return cpuinfo_field("cpu MHz", mhz, sizeof mhz) ? atof(mhz) / 1e3 : 0;
}

void cn_cpu_detect(cn_cpu_info *cpu) {
  memset(cpu, 0, sizeof *cpu);
  if (!cpuinfo_field("model name", cpu->name, sizeof cpu->name))
    snprintf(cpu->name, sizeof cpu->name, "unknown CPU");
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cpu->cores = cores > 0 ? (int)cores : 1;
  static char flags[8192];
  if (cpuinfo_field("flags", flags, sizeof flags)) {
    cpu->avx2 = has_flag(flags, "avx2");
    cpu->fma = has_flag(flags, "fma");
    cpu->avx512f = has_flag(flags, "avx512f");
    cpu->avx512_bf16 = has_flag(flags, "avx512_bf16");
  }
  char vendor[64] = "";
  cpuinfo_field("vendor_id", vendor, sizeof vendor);
  int amd = strcmp(vendor, "AuthenticAMD") == 0;
  /* two FMA units per core on every x86 CPU of the last decade; AMD runs AVX-512 on 256-bit
   * units (Zen 4), so its lanes per operation stay 8 */
  int lanes = cpu->avx512f && !amd ? 16 : cpu->avx2 ? 8 : 4;
  cpu->flops_per_cycle = cpu->fma ? 2 * lanes * 2 : 2 * lanes;
  cpu->ghz = clock_ghz();
}

double cn_cpu_peak_gflops(const cn_cpu_info *cpu, int threads) {
  const char *env = getenv("CONVNET_PEAK_GFLOPS");
  double per_core = env ? atof(env) : cpu->flops_per_cycle * cpu->ghz;
  return per_core > 0 ? per_core * (threads > 0 ? threads : 1) : 0;
}
