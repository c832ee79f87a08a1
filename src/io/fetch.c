/* Fetching official keras.applications weights into a local cache: download to a temporary file
 * next to the destination, check the published md5, then fsync and rename, so the cache only ever
 * holds complete, verified files. A cached file is used as it is, without the network. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "convnet/io.h"
#include "core/error.h"
#include "io/fetch_table.h"

/* The largest weights file accepted (VGG19 with top is 575 MB). */
#define FETCH_MAX_BYTES ((curl_off_t)1 << 30)
enum {
  FETCH_CONNECT_TIMEOUT_S = 30,
  FETCH_LOW_SPEED_BYTES = 1024, /* abort below 1 KB/s ... */
  FETCH_LOW_SPEED_TIME_S = 60,  /* ... sustained for a minute */
  FETCH_PATH_MAX = 4096,
  MD5_HEX = 32,
};

/* ---- the cache directory ---- */

static cn_status cache_dir(const cn_fetch_options *o, char *dir, size_t cap) {
  const char *env;
  if (o && o->cache_dir && *o->cache_dir)
    snprintf(dir, cap, "%s", o->cache_dir);
  else if ((env = getenv("CONVNET_CACHE")) && *env)
    snprintf(dir, cap, "%s", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env)
    snprintf(dir, cap, "%s/convnet", env);
  else if ((env = getenv("HOME")) && *env)
    snprintf(dir, cap, "%s/.cache/convnet", env);
  else
    return cn_fail(CN_ERR_ARG, "no cache directory: set CONVNET_CACHE or HOME");
  return CN_OK;
}

/* mkdir -p */
static cn_status make_dirs(const char *dir) {
  char path[FETCH_PATH_MAX];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return cn_fail(CN_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    *p = saved;
    if (!saved) break;
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return cn_fail(CN_ERR_IO, "%s: not a directory", dir);
  return CN_OK;
}

static int is_cached(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- md5 ---- */

static int valid_md5(const char *hex) {
  if (strlen(hex) != MD5_HEX) return 0;
  for (int i = 0; i < MD5_HEX; i++)
    if (!isxdigit((unsigned char)hex[i])) return 0;
  return 1;
}

/* The hash to check: $CONVNET_FETCH_MD5 (tests only) replaces the published one. */
static cn_status expected_md5(const cn_weights_file *w, const char **md5) {
  const char *env = getenv("CONVNET_FETCH_MD5");
  *md5 = env && *env ? env : w->md5;
  if (*md5 && !valid_md5(*md5))
    return cn_fail(CN_ERR_ARG, "CONVNET_FETCH_MD5: '%s' is not 32 hex digits", *md5);
  return CN_OK;
}

/* ---- the download ---- */

typedef struct download {
  int fd;
  EVP_MD_CTX *md5;
  curl_off_t bytes;
  int too_large, write_failed, quiet, tty;
} download;

static size_t on_data(char *data, size_t size, size_t count, void *user) {
  download *d = user;
  size_t n = size * count;
  if (d->bytes + (curl_off_t)n > FETCH_MAX_BYTES) {
    d->too_large = 1;
    return 0; /* aborts the transfer */
  }
  for (size_t done = 0; done < n;) {
    ssize_t w = write(d->fd, data + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      d->write_failed = errno ? errno : EIO;
      return 0;
    }
    done += (size_t)w;
  }
  EVP_DigestUpdate(d->md5, data, n);
  d->bytes += (curl_off_t)n;
  return n;
}

static int on_progress(void *user, curl_off_t total, curl_off_t now, curl_off_t up_total,
                       curl_off_t up_now) {
  download *d = user;
  if (!d->quiet && d->tty && total > 0)
    fprintf(stderr, "\r  %3d%% of %.1f MB", (int)(now * 100 / total), (double)total / 1e6);
  return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_status;
static void init_curl(void) {
  curl_init_status = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void set_transfer_options(CURL *c, const char *url, download *d, char *errbuf) {
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L); /* HTTP status >= 400 is an error */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)FETCH_CONNECT_TIMEOUT_S);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)FETCH_LOW_SPEED_BYTES);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)FETCH_LOW_SPEED_TIME_S);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, FETCH_MAX_BYTES);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT,
                   "convnet/"
                   "0.1");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

static cn_status transfer(const char *url, download *d) {
  pthread_once(&curl_once, init_curl);
  if (curl_init_status != CURLE_OK) return cn_fail(CN_ERR_NETWORK, "%s: libcurl init failed", url);
  CURL *c = curl_easy_init();
  if (!c) return cn_fail(CN_ERR_NETWORK, "%s: libcurl init failed", url);
  char errbuf[CURL_ERROR_SIZE] = "";
  set_transfer_options(c, url, d, errbuf);
  CURLcode rc = curl_easy_perform(c);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_cleanup(c);
  if (d->tty && !d->quiet) fputc('\n', stderr);
  if (d->too_large || rc == CURLE_FILESIZE_EXCEEDED)
    return cn_fail(CN_ERR_NETWORK, "%s: larger than the %lld-byte limit", url,
                   (long long)FETCH_MAX_BYTES);
  if (d->write_failed)
    return cn_fail(CN_ERR_IO, "%s: writing the download failed: %s", url,
                   strerror(d->write_failed));
  if (rc != CURLE_OK)
    return cn_fail(CN_ERR_NETWORK, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
  return CN_OK;
}

/* Downloads url into the open temporary file fd and checks the md5 (when one is known). */
static cn_status download_checked(const char *url, int fd, const char *md5, int quiet) {
  download d = {.fd = fd, .md5 = EVP_MD_CTX_new(), .quiet = quiet, .tty = isatty(2)};
  if (!d.md5 || !EVP_DigestInit_ex(d.md5, EVP_md5(), NULL)) {
    EVP_MD_CTX_free(d.md5);
    return cn_fail(CN_ERR_NOMEM, "%s: cannot start an md5 digest", url);
  }
  cn_status st = transfer(url, &d);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (st == CN_OK && !EVP_DigestFinal_ex(d.md5, digest, &len))
    st = cn_fail(CN_ERR_CHECKSUM, "%s: md5 digest failed", url);
  EVP_MD_CTX_free(d.md5);
  if (st != CN_OK || !md5) return st;
  char got[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < len; i++) snprintf(got + 2 * i, 3, "%02x", digest[i]);
  if (strcasecmp(got, md5) != 0)
    return cn_fail(CN_ERR_CHECKSUM, "%s: md5 %s, expected %s; the download was discarded", url, got,
                   md5);
  return CN_OK;
}

/* Downloads into a temporary file beside dest, then fsyncs and renames it to dest. */
static cn_status download_to(const char *url, const char *dest, const char *md5, int quiet) {
  char tmp[FETCH_PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.partXXXXXX", dest);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return cn_fail(CN_ERR_IO, "%s: cannot create a temporary file: %s", dest, strerror(errno));
  fchmod(fd, 0644);
  cn_status st = download_checked(url, fd, md5, quiet);
  if (st == CN_OK && fsync(fd) != 0) st = cn_fail(CN_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
  if (close(fd) != 0 && st == CN_OK) st = cn_fail(CN_ERR_IO, "%s: close: %s", tmp, strerror(errno));
  if (st == CN_OK && rename(tmp, dest) != 0)
    st = cn_fail(CN_ERR_IO, "%s: rename: %s", dest, strerror(errno));
  if (st != CN_OK) unlink(tmp);
  return st;
}

static void build_url(const cn_fetch_options *o, const cn_weights_file *w, char *url, size_t cap) {
  const char *base = o && o->base_url && *o->base_url ? o->base_url : getenv("CONVNET_WEIGHTS_URL");
  if (!base || !*base) base = CN_KERAS_WEIGHTS_URL;
  size_t n = strlen(base);
  snprintf(url, cap, "%s%s%s/%s", base, base[n - 1] == '/' ? "" : "/", w->subdir, w->file);
}

static cn_status fetch_missing(const cn_fetch_options *o, const cn_weights_file *w, const char *dir,
                               const char *dest) {
  int quiet = o && o->quiet;
  if (o && o->offline)
    return cn_fail(CN_ERR_IO, "%s: not in the cache (offline); run `convnet fetch %s%s%s` first",
                   dest, w->command, o->cache_dir ? " --cache " : "",
                   o->cache_dir ? o->cache_dir : "");
  const char *md5;
  cn_status st = expected_md5(w, &md5);
  if (st == CN_OK) st = make_dirs(dir);
  if (st != CN_OK) return st;
  char url[FETCH_PATH_MAX];
  build_url(o, w, url, sizeof url);
  if (!quiet) fprintf(stderr, "convnet: downloading %s\n", url);
  st = download_to(url, dest, md5, quiet);
  if (st == CN_OK && !md5 && !quiet)
    fprintf(stderr, "convnet: keras.applications publishes no checksum for %s: stored unverified\n",
            w->file);
  return st;
}

cn_status cn_fetch_weights(const char *name, const cn_fetch_options *options, char *path,
                           size_t cap) {
  if (!name || !path || cap == 0) return cn_fail(CN_ERR_ARG, "cn_fetch_weights: NULL argument");
  cn_weights_file w;
  cn_status st = cn_weights_lookup(name, options && options->no_top, &w);
  char dir[FETCH_PATH_MAX], dest[FETCH_PATH_MAX];
  if (st == CN_OK) st = cache_dir(options, dir, sizeof dir);
  if (st != CN_OK) return st;
  if (snprintf(dest, sizeof dest, "%s/%s", dir, w.file) >= (int)sizeof dest - 16)
    return cn_fail(CN_ERR_ARG, "%s: cache path too long", dir);
  if (!is_cached(dest)) st = fetch_missing(options, &w, dir, dest);
  if (st != CN_OK) return st;
  if (strlen(dest) >= cap) return cn_fail(CN_ERR_ARG, "%s: path longer than the buffer", dest);
  memcpy(path, dest, strlen(dest) + 1);
  return CN_OK;
}
