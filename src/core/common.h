/*
 * common.h: what every file of the core shares.
 *
 * The core (src/core/) is pure C11 plus OpenBLAS, json-c and PCRE2.  It never
 * includes postgres.h and never aborts: a crash inside a backend restarts the
 * whole server.  Errors travel back as an SftStatus plus a message in an
 * SftError that the caller owns; the PostgreSQL glue turns them into
 * ereport(ERROR) with a matching errcode, standalone tests print them.
 *
 * Allocation goes through one hook (sft_set_allocator) so the server can back
 * core memory by whatever it likes while unit tests and benchmarks use malloc.
 * Every allocator function may return NULL; core code checks and reports
 * SFT_ERR_NOMEM instead of dereferencing it.
 */
#ifndef SFT_CORE_COMMON_H
#define SFT_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum SftStatus
{
	SFT_OK = 0,
	SFT_ERR_INVALID,			/* bad argument or input data (user's fault) */
	SFT_ERR_FORMAT,				/* malformed file or serialized object */
	SFT_ERR_UNSUPPORTED,		/* well-formed but a feature we do not implement */
	SFT_ERR_LIMIT,				/* input exceeds a size or length limit */
	SFT_ERR_NOMEM,				/* an allocation failed */
	SFT_ERR_IO,					/* reading or writing a file failed */
	SFT_ERR_INTERNAL			/* a bug: "cannot happen" */
} SftStatus;

#define SFT_ERROR_MESSAGE_SIZE 512

typedef struct SftError
{
	SftStatus	status;
	char		message[SFT_ERROR_MESSAGE_SIZE];
} SftError;

/*
 * Record an error and return its status, so that callers can write
 *     return sft_error(err, SFT_ERR_INVALID, "message %d: no role", i);
 * err may be NULL (the message is then dropped).  The first error recorded
 * wins when a later caller adds context with sft_error_prefix().
 */
SftStatus	sft_error(SftError *err, SftStatus status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
/* Prepend context ("tokenizer.json: ") to an already recorded message. */
void		sft_error_prefix(SftError *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
void		sft_error_clear(SftError *err);
const char *sft_status_name(SftStatus status);

/* ---------------------------------------------------------------------------
 * Allocation hook
 * ------------------------------------------------------------------------- */

typedef struct SftAllocator
{
	void	   *(*alloc) (size_t size);
	void	   *(*realloc) (void *ptr, size_t size);
	void		(*free) (void *ptr);
} SftAllocator;

/* NULL restores malloc/realloc/free. */
void		sft_set_allocator(const SftAllocator *allocator);

void	   *sft_alloc(size_t size);
void	   *sft_calloc(size_t count, size_t size);	/* zeroed, overflow-checked */
void	   *sft_realloc(void *ptr, size_t size);
void		sft_free(void *ptr);
char	   *sft_strndup(const char *s, size_t len);	/* NUL-terminated copy */

/* ---------------------------------------------------------------------------
 * Growable buffers (bytes and int32), used for text and token ids.
 * ------------------------------------------------------------------------- */

typedef struct SftBuf
{
	char	   *data;			/* always NUL-terminated when len > 0 */
	size_t		len;
	size_t		cap;
} SftBuf;

void		sft_buf_init(SftBuf *buf);
void		sft_buf_free(SftBuf *buf);
SftStatus	sft_buf_reserve(SftBuf *buf, size_t extra);
SftStatus	sft_buf_append(SftBuf *buf, const char *data, size_t len);
SftStatus	sft_buf_append_str(SftBuf *buf, const char *s);

typedef struct SftIntVec
{
	int32_t    *data;
	size_t		len;
	size_t		cap;
} SftIntVec;

void		sft_intvec_init(SftIntVec *vec);
void		sft_intvec_free(SftIntVec *vec);
SftStatus	sft_intvec_push(SftIntVec *vec, int32_t value);

/* ---------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------- */

/* Offset of the first invalid byte, or (size_t) -1 if s[0..len) is valid. */
size_t		sft_utf8_invalid_offset(const char *s, size_t len);

/* ---------------------------------------------------------------------------
 * Deterministic random numbers (xoshiro256**), identical on every platform so
 * that a seed reproduces a run.
 * ------------------------------------------------------------------------- */

typedef struct SftRng
{
	uint64_t	s[4];
} SftRng;

void		sft_rng_seed(SftRng *rng, uint64_t seed);
uint64_t	sft_rng_next(SftRng *rng);
double		sft_rng_uniform(SftRng *rng);	/* [0, 1) */
float		sft_rng_normal(SftRng *rng);	/* standard normal */

#endif							/* SFT_CORE_COMMON_H */
