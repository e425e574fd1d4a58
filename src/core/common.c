/*
 * common.c: errors, the allocation hook, growable buffers, UTF-8 validation
 * and the deterministic random number generator shared by the core.
 */
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------- */

SftStatus
sft_error(SftError *err, SftStatus status, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL || err->status != SFT_OK)
		return status;
	err->status = status;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return status;
}

void
sft_error_prefix(SftError *err, const char *fmt,...)
{
	char		prefix[SFT_ERROR_MESSAGE_SIZE];
	char		joined[SFT_ERROR_MESSAGE_SIZE];
	va_list		ap;

	if (err == NULL || err->status == SFT_OK)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s%s", prefix, err->message);
	memcpy(err->message, joined, sizeof(joined));
}

void
sft_error_clear(SftError *err)
{
	if (err == NULL)
		return;
	err->status = SFT_OK;
	err->message[0] = '\0';
}

const char *
sft_status_name(SftStatus status)
{
	switch (status)
	{
		case SFT_OK:
			return "ok";
		case SFT_ERR_INVALID:
			return "invalid input";
		case SFT_ERR_FORMAT:
			return "malformed data";
		case SFT_ERR_UNSUPPORTED:
			return "unsupported";
		case SFT_ERR_LIMIT:
			return "limit exceeded";
		case SFT_ERR_NOMEM:
			return "out of memory";
		case SFT_ERR_IO:
			return "i/o error";
		case SFT_ERR_INTERNAL:
			return "internal error";
	}
	return "unknown";
}

/* ---------------------------------------------------------------------------
 * Allocation hook
 * ------------------------------------------------------------------------- */

static const SftAllocator default_allocator = {malloc, realloc, free};
static const SftAllocator *current_allocator = &default_allocator;

void
sft_set_allocator(const SftAllocator *allocator)
{
	current_allocator = allocator ? allocator : &default_allocator;
}

void *
sft_alloc(size_t size)
{
	return current_allocator->alloc(size ? size : 1);
}

void *
sft_calloc(size_t count, size_t size)
{
	void	   *p;

	if (size != 0 && count > SIZE_MAX / size)
		return NULL;
	p = sft_alloc(count * size);
	if (p)
		memset(p, 0, count * size);
	return p;
}

void *
sft_realloc(void *ptr, size_t size)
{
	if (ptr == NULL)
		return sft_alloc(size);
	return current_allocator->realloc(ptr, size ? size : 1);
}

void
sft_free(void *ptr)
{
	if (ptr)
		current_allocator->free(ptr);
}

char *
sft_strndup(const char *s, size_t len)
{
	char	   *copy = sft_alloc(len + 1);

	if (copy == NULL)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/* ---------------------------------------------------------------------------
 * Growable buffers
 * ------------------------------------------------------------------------- */

void
sft_buf_init(SftBuf *buf)
{
	buf->data = NULL;
	buf->len = 0;
	buf->cap = 0;
}

void
sft_buf_free(SftBuf *buf)
{
	sft_free(buf->data);
	sft_buf_init(buf);
}

SftStatus
sft_buf_reserve(SftBuf *buf, size_t extra)
{
	size_t		need;
	size_t		cap;
	char	   *data;

	if (extra > SIZE_MAX - buf->len - 1)
		return SFT_ERR_NOMEM;
	need = buf->len + extra + 1;
	if (need <= buf->cap)
		return SFT_OK;
	cap = buf->cap ? buf->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	data = sft_realloc(buf->data, cap);
	if (data == NULL)
		return SFT_ERR_NOMEM;
	buf->data = data;
	buf->cap = cap;
	return SFT_OK;
}

SftStatus
sft_buf_append(SftBuf *buf, const char *data, size_t len)
{
	if (sft_buf_reserve(buf, len) != SFT_OK)
		return SFT_ERR_NOMEM;
	if (len)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return SFT_OK;
}

SftStatus
sft_buf_append_str(SftBuf *buf, const char *s)
{
	return sft_buf_append(buf, s, strlen(s));
}

void
sft_intvec_init(SftIntVec *vec)
{
	vec->data = NULL;
	vec->len = 0;
	vec->cap = 0;
}

void
sft_intvec_free(SftIntVec *vec)
{
	sft_free(vec->data);
	sft_intvec_init(vec);
}

SftStatus
sft_intvec_push(SftIntVec *vec, int32_t value)
{
	if (vec->len == vec->cap)
	{
		size_t		cap = vec->cap ? vec->cap * 2 : 64;
		int32_t    *data;

		if (cap > SIZE_MAX / sizeof(int32_t))
			return SFT_ERR_NOMEM;
		data = sft_realloc(vec->data, cap * sizeof(int32_t));
		if (data == NULL)
			return SFT_ERR_NOMEM;
		vec->data = data;
		vec->cap = cap;
	}
	vec->data[vec->len++] = value;
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * UTF-8 validation (RFC 3629: no overlongs, no surrogates, max U+10FFFF)
 * ------------------------------------------------------------------------- */

size_t
sft_utf8_invalid_offset(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c;
		size_t		n;
		uint32_t	cp;

		/* ASCII runs eight bytes at a time: most text is mostly ASCII */
		while (len - i >= 8)
		{
			uint64_t	w;

			memcpy(&w, p + i, 8);
			if (w & UINT64_C(0x8080808080808080))
				break;
			i += 8;
		}
		if (i >= len)
			break;
		c = p[i];
		if (c < 0x80)
		{
			i++;
			continue;
		}
		else if (c >= 0xC2 && c <= 0xDF)
		{
			n = 2;
			cp = c & 0x1F;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			n = 3;
			cp = c & 0x0F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			n = 4;
			cp = c & 0x07;
		}
		else
			return i;
		if (len - i < n)
			return i;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
			(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
			return i;
		i += n;
	}
	return (size_t) -1;
}

/* ---------------------------------------------------------------------------
 * xoshiro256** seeded through splitmix64
 * ------------------------------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

void
sft_rng_seed(SftRng *rng, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&seed);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
sft_rng_next(SftRng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double
sft_rng_uniform(SftRng *rng)
{
	return (double) (sft_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

float
sft_rng_normal(SftRng *rng)
{
	/* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
	double		u1 = 1.0 - sft_rng_uniform(rng);
	double		u2 = sft_rng_uniform(rng);

	return (float) (sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
