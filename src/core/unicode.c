/*
 * unicode.c: UTF-8 helpers, White_Space and NFC normalisation with an
 * input-offset map (see unicode.h).
 *
 * NFC follows UAX #15 literally: full canonical decomposition (Hangul
 * algorithmically), canonical ordering of combining marks by class, then
 * canonical composition with the "blocked" rule.  The data are the generated
 * tables in unicode_tables.c.  Text without any NFC-sensitive code point
 * (all ASCII, most CJK ...) is detected by sft_unicode_nfc_quick_ok() and
 * never takes this path.
 */
#include "unicode.h"

#include <string.h>

#define HANGUL_S_BASE	0xAC00
#define HANGUL_L_BASE	0x1100
#define HANGUL_V_BASE	0x1161
#define HANGUL_T_BASE	0x11A7
#define HANGUL_L_COUNT	19
#define HANGUL_V_COUNT	21
#define HANGUL_T_COUNT	28
#define HANGUL_N_COUNT	(HANGUL_V_COUNT * HANGUL_T_COUNT)
#define HANGUL_S_COUNT	(HANGUL_L_COUNT * HANGUL_N_COUNT)

/* Longest full canonical decomposition of one code point (Unicode: 4). */
#define NFC_MAX_DECOMP 8

size_t
sft_utf8_encode(uint32_t cp, char *out)
{
	unsigned char *o = (unsigned char *) out;

	if (cp < 0x80)
	{
		o[0] = (unsigned char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		o[0] = (unsigned char) (0xC0 | (cp >> 6));
		o[1] = (unsigned char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		o[0] = (unsigned char) (0xE0 | (cp >> 12));
		o[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char) (0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char) (0xF0 | (cp >> 18));
	o[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char) (0x80 | (cp & 0x3F));
	return 4;
}

int
sft_unicode_is_space(uint32_t cp)
{
	if (cp <= 0x20)
		return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
	if (cp < 0x85)
		return 0;
	return cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
		(cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
		cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int
sft_unicode_ccc(uint32_t cp)
{
	int			lo = 0;
	int			hi = sft_unicode_ccc_table_count - 1;

	if (cp < 0x300)
		return 0;
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (cp < sft_unicode_ccc_table[mid].first)
			hi = mid - 1;
		else if (cp > sft_unicode_ccc_table[mid].last)
			lo = mid + 1;
		else
			return sft_unicode_ccc_table[mid].ccc;
	}
	return 0;
}

static int
nfc_sensitive(uint32_t cp)
{
	int			lo = 0;
	int			hi = sft_unicode_nfc_sensitive_count - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (cp < sft_unicode_nfc_sensitive[mid].first)
			hi = mid - 1;
		else if (cp > sft_unicode_nfc_sensitive[mid].last)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

int
sft_unicode_nfc_quick_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		n;
		uint32_t	cp;

		if (p[i] < 0x80)
		{
			i++;
			continue;
		}
		cp = sft_utf8_decode(p + i, &n);
		/* Below U+00C0 every code point is NFC_Quick_Check Yes with class 0. */
		if (cp >= 0xC0 && nfc_sensitive(cp))
			return 0;
		i += n;
	}
	return 1;
}

static const SftUnicodeDecomp *
find_decomp(uint32_t cp)
{
	int			lo = 0;
	int			hi = sft_unicode_decomp_count - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (cp < sft_unicode_decomp[mid].cp)
			hi = mid - 1;
		else if (cp > sft_unicode_decomp[mid].cp)
			lo = mid + 1;
		else
			return &sft_unicode_decomp[mid];
	}
	return NULL;
}

/* Full canonical decomposition of cp into out; returns the count. */
static int
decompose(uint32_t cp, uint32_t *out)
{
	const SftUnicodeDecomp *d;
	int			n;

	if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT)
	{
		uint32_t	s = cp - HANGUL_S_BASE;
		uint32_t	t = s % HANGUL_T_COUNT;

		out[0] = HANGUL_L_BASE + s / HANGUL_N_COUNT;
		out[1] = HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT;
		if (t == 0)
			return 2;
		out[2] = HANGUL_T_BASE + t;
		return 3;
	}
	d = cp >= 0xC0 ? find_decomp(cp) : NULL;
	if (d == NULL)
	{
		out[0] = cp;
		return 1;
	}
	/* Only the first element of a canonical decomposition decomposes further. */
	n = decompose(d->first, out);
	if (d->second != 0 && n < NFC_MAX_DECOMP)
		out[n++] = d->second;
	return n;
}

/* Primary composite of (a, b), or 0. */
static uint32_t
compose(uint32_t a, uint32_t b)
{
	int			lo = 0;
	int			hi = sft_unicode_comp_count - 1;

	if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT &&
		b >= HANGUL_V_BASE && b < HANGUL_V_BASE + HANGUL_V_COUNT)
		return HANGUL_S_BASE + ((a - HANGUL_L_BASE) * HANGUL_V_COUNT +
								(b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
	if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT &&
		(a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 &&
		b > HANGUL_T_BASE && b < HANGUL_T_BASE + HANGUL_T_COUNT)
		return a + (b - HANGUL_T_BASE);
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		const SftUnicodeComp *c = &sft_unicode_comp[mid];

		if (a < c->first || (a == c->first && b < c->second))
			hi = mid - 1;
		else if (a > c->first || b > c->second)
			lo = mid + 1;
		else
			return c->composed;
	}
	return 0;
}

typedef struct NfcChar
{
	uint32_t	cp;
	int32_t		src;			/* input byte offset it came from */
	uint8_t		ccc;
} NfcChar;

SftStatus
sft_unicode_nfc(const char *s, size_t len, SftBuf *out, SftIntVec *map,
				int32_t base, SftError *err)
{
	const unsigned char *p = (const unsigned char *) s;
	NfcChar    *chars;			/* [len * NFC_MAX_DECOMP worst case, grown] */
	size_t		cap = len + 16;
	size_t		n = 0;
	size_t		i;
	size_t		out_start_len = out->len;
	size_t		map_start_len = map ? map->len : 0;
	SftStatus	status = SFT_OK;

	chars = sft_alloc(cap * sizeof(NfcChar));
	if (chars == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory normalising %zu bytes", len);

	/* 1. Full canonical decomposition, each piece remembering its source. */
	for (i = 0; i < len;)
	{
		uint32_t	dec[NFC_MAX_DECOMP];
		size_t		clen;
		uint32_t	cp = sft_utf8_decode(p + i, &clen);
		int			k = decompose(cp, dec);

		if (n + (size_t) k > cap)
		{
			NfcChar    *grown;

			cap = cap * 2 + (size_t) k;
			grown = sft_realloc(chars, cap * sizeof(NfcChar));
			if (grown == NULL)
			{
				sft_free(chars);
				return sft_error(err, SFT_ERR_NOMEM, "out of memory normalising %zu bytes", len);
			}
			chars = grown;
		}
		for (int j = 0; j < k; j++)
		{
			chars[n].cp = dec[j];
			chars[n].src = (int32_t) i;
			chars[n].ccc = (uint8_t) sft_unicode_ccc(dec[j]);
			n++;
		}
		i += clen;
	}

	/* 2. Canonical ordering: stable insertion sort of each run of marks. */
	for (i = 1; i < n; i++)
	{
		NfcChar		c = chars[i];
		size_t		j = i;

		if (c.ccc == 0)
			continue;
		while (j > 0 && chars[j - 1].ccc > c.ccc)
		{
			chars[j] = chars[j - 1];
			j--;
		}
		chars[j] = c;
	}

	/* 3. Canonical composition (UAX #15 D117), in place. */
	if (n > 0)
	{
		size_t		starter = 0;
		size_t		kept = 1;
		int			last_ccc = chars[0].ccc ? 256 : 0;	/* 256: nothing composes */

		for (i = 1; i < n; i++)
		{
			NfcChar		c = chars[i];
			uint32_t	composite;

			/* last_ccc == 0 means the previous kept character is the starter. */
			if (last_ccc < c.ccc || last_ccc == 0)
			{
				composite = compose(chars[starter].cp, c.cp);
				if (composite != 0)
				{
					chars[starter].cp = composite;
					continue;
				}
			}
			if (c.ccc == 0)
				starter = kept;
			last_ccc = c.ccc;
			chars[kept++] = c;
		}
		n = kept;
	}

	/* Sources must be non-decreasing: reordered marks take the earliest. */
	for (i = n; i-- > 1;)
		if (chars[i - 1].src > chars[i].src)
			chars[i - 1].src = chars[i].src;

	/* 4. Encode; unchanged characters map byte for byte. */
	for (i = 0; i < n && status == SFT_OK; i++)
	{
		char		enc[4];
		size_t		elen = sft_utf8_encode(chars[i].cp, enc);
		size_t		slen;
		int			same;

		status = sft_buf_append(out, enc, elen);
		if (status != SFT_OK || map == NULL)
			continue;
		same = sft_utf8_decode(p + chars[i].src, &slen) == chars[i].cp;
		for (size_t k = 0; k < elen && status == SFT_OK; k++)
			status = sft_intvec_push(map, base + chars[i].src + (same ? (int32_t) k : 0));
	}
	sft_free(chars);
	if (status != SFT_OK)
	{
		out->len = out_start_len;
		if (map)
			map->len = map_start_len;
		return sft_error(err, status, "out of memory normalising %zu bytes", len);
	}
	return SFT_OK;
}
