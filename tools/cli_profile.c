/* --profile of `convnet run` and `convnet classify`: time per layer, its operations per second
 * and its share of the CPU's fp32 peak, from cn_model_profile and cn_cpu_detect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_row(const char *name, const char *type, double ms, double total_ms, double gflop,
                      double peak) {
  double rate = ms > 0 ? gflop / (ms / 1e3) : 0;
  printf("%-32.32s %-22.22s %9.3f %6.1f%% %9.4f %9.1f", name, type, ms,
         total_ms > 0 ? 100 * ms / total_ms : 0, gflop, rate);
  if (peak > 0)
    printf(" %6.1f%%\n", 100 * rate / peak);
  else
    printf("      -\n");
}

/* The same columns summed per layer type, the most time first. */
static void print_by_type(const cn_layer_profile *layers, size_t n, double total_ms, double peak) {
  typedef struct by_type {
    const char *type;
    int count;
    double ms, gflop;
  } by_type;
  by_type *t = calloc(n ? n : 1, sizeof *t);
  size_t types = 0;
  for (size_t i = 0; t && i < n; i++) {
    size_t k = 0;
    while (k < types && strcmp(t[k].type, layers[i].type) != 0) k++;
    if (k == types) t[types++] = (by_type){.type = layers[i].type};
    t[k].count++, t[k].ms += layers[i].ms, t[k].gflop += layers[i].gflop;
  }
  for (size_t a = 1; a < types; a++) /* insertion sort by time, descending */
    for (size_t b = a; b > 0 && t[b].ms > t[b - 1].ms; b--) {
      by_type x = t[b];
      t[b] = t[b - 1], t[b - 1] = x;
    }
  printf("\nby type:\n");
  for (size_t k = 0; k < types; k++) {
    char name[64];
    snprintf(name, sizeof name, "%s (%d)", t[k].type, t[k].count);
    print_row(name, "", t[k].ms, total_ms, t[k].gflop, peak);
  }
  free(t);
}

int cli_print_profile(cn_model *model, int batch, const float *const *inputs, int iterations) {
  cn_layer_profile *layers = NULL;
  size_t n = 0;
  if (cn_model_profile(model, batch, inputs, iterations, &layers, &n) != CN_OK)
    return cli_lib_error();
  cn_cpu_info cpu;
  cn_cpu_detect(&cpu);
  int threads = cn_get_threads();
  double peak = cn_cpu_peak_gflops(&cpu, threads);
  printf("profile: %s, batch %d, mean of %d forward passes after one untimed\n",
         cn_model_name(model), batch, iterations);
  printf("CPU: %s; %d thread(s); fp32 peak %.1f GFLOP/s (%d FLOP/cycle x %.2f GHz x %d)%s\n",
         cpu.name, threads, peak, cpu.flops_per_cycle, cpu.ghz, threads,
         getenv("CONVNET_PEAK_GFLOPS") ? " from CONVNET_PEAK_GFLOPS" : "");
  printf("%-32s %-22s %9s %7s %9s %9s %7s\n", "layer", "type", "ms", "share", "GFLOP", "GFLOP/s",
         "peak");
  double total_ms = 0, total_gflop = 0;
  for (size_t i = 0; i < n; i++) total_ms += layers[i].ms, total_gflop += layers[i].gflop;
  for (size_t i = 0; i < n; i++)
    print_row(layers[i].name, layers[i].type, layers[i].ms, total_ms, layers[i].gflop, peak);
  print_row("total", "", total_ms, total_ms, total_gflop, peak);
  print_by_type(layers, n, total_ms, peak);
  free(layers);
  return CLI_OK;
}
