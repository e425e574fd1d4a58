/*
 * gen_checkpoint_seeds.c: adapter checkpoints (LoRA training checkpoints:
 * the adapter and its moments) for fuzz_checkpoint's corpus, against the
 * base of fuzz_lora_base.h.
 *
 *   gen_checkpoint_seeds OUTDIR
 */
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "fuzz_lora_base.h"

static int
write_seed(const char *dir, const char *name, const SftLoraConfig *lc, int with_moments)
{
	SftLlamaConfig base = fuzz_lora_base();
	SftLoraAdapter *ad = NULL;
	SftError	err = {0};
	SftBuf		out;
	float	   *m,
			   *v;
	char		path[4096];
	FILE	   *f;
	SftCheckpointState st = {0};

	if (sft_lora_adapter_new(lc, &base, &ad, &err) != SFT_OK)
		return fprintf(stderr, "%s\n", err.message), 1;
	m = calloc(ad->n_params, sizeof(float));
	v = calloc(ad->n_params, sizeof(float));
	for (size_t i = 0; i < ad->n_params; i++)
		ad->params[i] = m[i] = v[i] = 0.01f * (float) (i % 13);
	if (with_moments)
	{
		st.adam_m = m;
		st.adam_v = v;
		st.step = 7;
		st.meta_json = "{\"run\": 1}";
	}
	sft_buf_init(&out);
	if (sft_checkpoint_write_adapter(sft_buf_write, &out, ad, &st, &err) != SFT_OK)
		return fprintf(stderr, "%s\n", err.message), 1;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0)
		return fprintf(stderr, "cannot write %s\n", path), 1;
	sft_buf_free(&out);
	sft_lora_adapter_free(ad);
	free(m);
	free(v);
	return 0;
}

int
main(int argc, char **argv)
{
	SftLoraConfig all = {.r = 2, .alpha = 4, .dropout = 0.1, .targets = SFT_LORA_TARGET_ALL};
	SftLoraConfig qv = {.r = 1, .alpha = 1, .rslora = 1,
	.targets = SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V)};

	if (argc != 2)
		return 2;
	return write_seed(argv[1], "adapter_all.ckpt", &all, 1) ||
		write_seed(argv[1], "adapter_qv.ckpt", &qv, 0);
}
