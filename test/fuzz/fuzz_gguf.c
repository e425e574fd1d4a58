/*
 * fuzz_gguf.c: libFuzzer target for the GGUF reader (gguf.c).
 *
 * Input: a whole GGUF file.  Every input must end in SFT_OK or an error with
 * a message; ASan and UBSan catch any out-of-bounds read.  A file that
 * parses is also walked the way the tests use it: every string array
 * listed, every tensor of up to 2^20 elements converted to fp32.
 */
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftGgufFile f;
	SftError	err = {0};

	if (sft_gguf_parse(data, size, &f, &err) != SFT_OK)
	{
		if (err.message[0] == '\0')
			abort();			/* every refusal says why */
		return 0;
	}
	for (uint64_t i = 0; i < f.n_kv; i++)
	{
		const SftGgufValue *v = &f.kv[i].value;

		if ((v->type == SFT_GGUF_ARRAY && v->elem_type == SFT_GGUF_STRING) || v->type == SFT_GGUF_STRING)
		{
			uint64_t	n = v->type == SFT_GGUF_STRING ? 1 : v->count;
			const char **s = malloc(sizeof(*s) * (n ? n : 1));
			uint64_t   *len = malloc(sizeof(*len) * (n ? n : 1));

			if (sft_gguf_strings(v, s, len, &err) == SFT_OK)
				for (uint64_t j = 0; j < n; j++)
					if (len[j] > 0 && (s[j][0] == 0x7f && s[j][len[j] - 1] == 0x7f))
						err.message[0] = 0;	/* touch both ends of each string */
			free(s);
			free(len);
		}
	}
	for (uint64_t i = 0; i < f.n_tensors; i++)
	{
		const SftGgufTensorIn *t = &f.tensors[i];
		uint64_t	n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];

		if (n <= ((uint64_t) 1 << 20))
		{
			float	   *out = malloc(sizeof(float) * n);

			sft_gguf_tensor_to_f32(t, out, &err);
			free(out);
		}
	}
	sft_gguf_file_free(&f);
	return 0;
}
