/*
 * parity_driver.c: runs the C core on a tiny random model of one family and
 * writes everything llama_ref.py needs to recompute it in PyTorch, as raw
 * little-endian binary files (no safetensors: this test must not depend on
 * the weight-file code it would then also be testing).
 *
 *   parity_driver OUTDIR FAMILY TIED [lora TARGETS R ALPHA DROPOUT RSLORA [ckpt]]
 *
 * With "lora" the run trains an adapter on the frozen model (TARGETS:
 * "all-linear" or module names joined by commas): the slabs below are then
 * the adapter's (lora_tensors.txt names them), the keep files hold the
 * adapter dropout draws, base_after.bin the base after training (it must
 * be params0.bin byte for byte) and the decoder logits are not written;
 * lora_ref.py checks it.  "ckpt" turns activation checkpointing on.
 *
 * FAMILY is llama, llama3 (llama3 rope scaling), linear (linear rope
 * scaling), qwen2, qwen3, smollm3 or gemma3: a shape-reduced config with every feature of that family active
 * (GQA; q/k/v bias; q/k norms with head_dim != hidden / heads; a NoPE
 * layer; local and global layers with a window shorter than the sequences,
 * softcapping ...).
 *
 * Files (float32 / int32 raw arrays; text files are "key value" lines):
 *   config.json         the model's config.json as the core writes it (the
 *                       reference reads the family's features from it)
 *   config.txt          sizes and AdamW settings, n_steps, n_micro
 *   tensors.txt         "name offset ndim d0 d1 weight_decay" per tensor
 *   params0.bin         initial parameter slab [n_params]
 *   b{s}_{j}_lens.bin / _tokens.bin / _mask.bin   micro-batch j of step s
 *   logits.bin          decoder logits at every position of each sequence of
 *                       micro-batch b0_0, fed one token at a time with the
 *                       KV cache: [T, V]
 *   loss.txt            per step: summed loss and target count
 *   grads0.bin          summed gradient of step 0 (before the optimizer)
 *   params{s+1}.bin     parameters after optimizer step s
 *   steps.txt           per step: lr and gradient norm (before clipping)
 */
#include "model.h"
#include "llama_config.h"
#include "lora_adapter.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_STEPS 3
#define N_MICRO 2

static int
write_raw(const char *dir, const char *name, const void *data, size_t bytes)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0)
	{
		fprintf(stderr, "parity_driver: cannot write %s\n", path);
		exit(1);
	}
	return 0;
}

static FILE *
open_text(const char *dir, const char *name)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
	{
		fprintf(stderr, "parity_driver: cannot write %s\n", path);
		exit(1);
	}
	return f;
}

static void
die(const SftError *err)
{
	fprintf(stderr, "parity_driver: %s\n", err->message);
	exit(1);
}

/* The family's tiny config: Llama's shape plus what the family adds. */
static int
family_config(const char *family, SftLlamaConfig *cfg)
{
	if (strcmp(family, "llama") == 0)
		return 1;
	if (strcmp(family, "llama3") == 0)
	{
		/* inverse frequencies 1, 0.1, 0.01, 0.001: one in each band */
		cfg->rope_type = SFT_ROPE_LLAMA3;
		cfg->rope_factor = 4.0f;
		cfg->rope_low_freq_factor = 1.0f;
		cfg->rope_high_freq_factor = 4.0f;
		cfg->rope_original_max_position = 64;
		return 1;
	}
	if (strcmp(family, "linear") == 0)
	{
		cfg->rope_type = SFT_ROPE_LINEAR;
		cfg->rope_factor = 2.5f;
		return 1;
	}
	if (strcmp(family, "qwen2") == 0)
	{
		cfg->family = SFT_FAMILY_QWEN2;
		cfg->qkv_bias = 1;
		cfg->rope_theta = 1000000.0f;
		return 1;
	}
	if (strcmp(family, "qwen3") == 0)
	{
		cfg->family = SFT_FAMILY_QWEN3;
		cfg->qk_norm = 1;
		cfg->head_dim = 12;		/* != 32 / 4 */
		return 1;
	}
	if (strcmp(family, "smollm3") == 0)
	{
		cfg->family = SFT_FAMILY_SMOLLM3;
		cfg->n_layers = 3;
		cfg->layer_flags[1] = SFT_LAYER_NOPE;
		return 1;
	}
	if (strcmp(family, "gemma3") == 0)
	{
		cfg->family = SFT_FAMILY_GEMMA3;
		cfg->qk_norm = 1;
		cfg->n_layers = 3;
		cfg->head_dim = 12;
		cfg->sliding_window = 4;	/* shorter than every sequence but one */
		cfg->layer_flags[0] = cfg->layer_flags[1] = SFT_LAYER_SLIDING;
		cfg->rope_theta = 1000000.0f;
		cfg->rope_local_theta = 10000.0f;
		cfg->query_pre_attn_scalar = 10.0f;
		cfg->final_logit_softcap = 5.0f;
		cfg->rms_norm_eps = 1e-6f;
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dir;
	const char *family;
	int			tied;
	int			lora = argc >= 10 && strcmp(argv[4], "lora") == 0;
	SftLoraConfig lcfg = {0};
	SftLoraAdapter *ad = NULL;
	SftTrainerOptions topts = {.max_tokens = 32, .seed = 1};
	SftLlamaConfig cfg = {
		.hidden_size = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
		.intermediate_size = 48, .vocab_size = 50, .max_position = 64,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .bos_token_id = -1, .eos_token_id = -1
	};
	SftAdamWConfig adam = {0.9, 0.95, 1e-8, 0.1, 0.0};
	/* sequence lengths of each micro-batch (packed), the same for every step */
	static const int lens[N_MICRO][3] = {{9, 5, 12}, {7, 10, 0}};
	static const int n_seqs[N_MICRO] = {3, 2};
	SftModel   *m = NULL;
	SftTrainer *tr = NULL;
	SftDecoder *dec = NULL;
	SftError	err = {0};
	SftRng		rng;
	size_t		n;
	float	   *p;
	FILE	   *f,
			   *floss,
			   *fsteps;
	int32_t		tokens[N_STEPS][N_MICRO][32],
				mask[N_STEPS][N_MICRO][32];

	if (!(argc == 4 || (lora && argc <= 11)) || !family_config(argv[2], &cfg))
	{
		fprintf(stderr, "usage: parity_driver OUTDIR llama|llama3|linear|qwen2|qwen3|smollm3|gemma3 TIED(0|1) [lora TARGETS R ALPHA DROPOUT RSLORA [ckpt]]\n");
		return 2;
	}
	if (lora)
	{
		char	   *list = strdup(argv[5]);

		if (strcmp(list, "all-linear") == 0)
			lcfg.targets = SFT_LORA_TARGET_ALL;
		else
			for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
			{
				int			mod = sft_lora_module_from_name(tok);

				if (mod < 0)
				{
					fprintf(stderr, "parity_driver: unknown module %s\n", tok);
					return 2;
				}
				lcfg.targets |= SFT_LORA_TARGET(mod);
			}
		free(list);
		lcfg.r = atoi(argv[6]);
		lcfg.alpha = atof(argv[7]);
		lcfg.dropout = atof(argv[8]);
		lcfg.rslora = atoi(argv[9]);
		topts.checkpoint_activations = argc == 11 && strcmp(argv[10], "ckpt") == 0;
	}
	dir = argv[1];
	family = argv[2];
	tied = atoi(argv[3]) != 0;
	cfg.tie_word_embeddings = tied;
	openblas_set_num_threads(1);

	if (sft_model_new(&cfg, &m, &err) != SFT_OK ||
		(lora && sft_lora_adapter_new(&lcfg, &cfg, &ad, &err) != SFT_OK) ||
		sft_decoder_new(m, 32, &dec, &err) != SFT_OK)
		die(&err);
	topts.adapter = ad;
	if (sft_trainer_create(m, &topts, &tr, &err) != SFT_OK)
		die(&err);
	n = sft_model_num_params(m);
	p = sft_model_params(m);
	if (n != sft_llama_config_num_params(&cfg))
	{
		fprintf(stderr, "parity_driver: the model has %zu parameters, the config counts %llu\n",
				n, (unsigned long long) sft_llama_config_num_params(&cfg));
		return 1;
	}

	/*
	 * Weights larger than HF's 0.02 so every term of the gradient is
	 * sizeable; norms near their identity (1, or 0 for Gemma's 1 + w);
	 * biases small but not zero.
	 */
	sft_rng_seed(&rng, 1000 + tied);
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		const SftParamTensor *t = sft_model_tensor(m, i);
		size_t		nl = strlen(t->name);
		int			bias = nl > 5 && strcmp(t->name + nl - 5, ".bias") == 0;
		float		centre = bias || cfg.family == SFT_FAMILY_GEMMA3 ? 0.0f : 1.0f;

		for (size_t j = 0; j < t->numel; j++)
			p[t->offset + j] = t->ndim == 1 ? centre + 0.1f * sft_rng_normal(&rng)
				: 0.15f * sft_rng_normal(&rng);
	}
	{
		SftBuf		json;

		sft_buf_init(&json);
		if (sft_llama_config_to_json(&cfg, &json, &err) != SFT_OK)
			die(&err);
		write_raw(dir, "config.json", json.data, json.len);
		sft_buf_free(&json);
	}
	f = open_text(dir, "config.txt");
	fprintf(f, "hidden_size %d\nn_layers %d\nn_heads %d\nn_kv_heads %d\nhead_dim %d\n"
			"intermediate_size %d\nvocab_size %d\nrms_norm_eps %.9g\nrope_theta %.9g\n"
			"tie_word_embeddings %d\nbeta1 %.17g\nbeta2 %.17g\neps %.17g\nweight_decay %.17g\n"
			"n_steps %d\nn_micro %d\nn_params %zu\nfamily %s\n",
			cfg.hidden_size, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
			cfg.intermediate_size, cfg.vocab_size, cfg.rms_norm_eps, cfg.rope_theta, tied,
			adam.beta1, adam.beta2, adam.eps, adam.weight_decay, N_STEPS, N_MICRO, n, family);
	fclose(f);
	f = open_text(dir, "tensors.txt");
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		const SftParamTensor *t = sft_model_tensor(m, i);

		fprintf(f, "%s %zu %d %lld %lld %d\n", t->name, t->offset, t->ndim,
				(long long) t->shape[0], (long long) t->shape[1], t->weight_decay);
	}
	fclose(f);
	write_raw(dir, "params0.bin", p, n * sizeof(float));
	if (lora)
	{
		/*
		 * PEFT's initialisation, then B random too: with B = 0 every lora_A
		 * gradient is zero and would test nothing.
		 */
		sft_lora_init_peft(ad, 7);
		for (int i = 0; i < ad->n_tensors; i++)
			if (ad->tensors[i].is_b)
				for (size_t j = 0; j < ad->tensors[i].numel; j++)
					ad->params[ad->tensors[i].offset + j] = 0.1f * sft_rng_normal(&rng);
		f = open_text(dir, "lora.txt");
		fprintf(f, "r %d\nalpha %.17g\nscale %.9g\ndropout %.17g\nrslora %d\nn_train %zu\nckpt %d\n",
				lcfg.r, lcfg.alpha, sft_lora_scale(&lcfg), lcfg.dropout, lcfg.rslora,
				ad->n_params, topts.checkpoint_activations);
		fclose(f);
		f = open_text(dir, "lora_tensors.txt");
		for (int i = 0; i < ad->n_tensors; i++)
		{
			const SftLoraTensor *t = &ad->tensors[i];

			fprintf(f, "%s %zu %d %s %d %lld %lld\n", t->name, t->offset, t->layer,
					sft_lora_module_name(t->module), t->is_b,
					(long long) t->shape[0], (long long) t->shape[1]);
		}
		fclose(f);
		write_raw(dir, "adapter0.bin", ad->params, ad->n_params * sizeof(float));
		/* from here on the slabs written are the adapter's */
		p = ad->params;
		n = ad->n_params;
	}

	/* data: random tokens, random masks with a few zero runs */
	for (int s = 0; s < N_STEPS; s++)
		for (int j = 0; j < N_MICRO; j++)
		{
			int			T = 0;
			char		name[64];

			for (int q = 0; q < n_seqs[j]; q++)
				T += lens[j][q];
			for (int t = 0; t < T; t++)
			{
				tokens[s][j][t] = (int32_t) (sft_rng_next(&rng) % cfg.vocab_size);
				mask[s][j][t] = sft_rng_uniform(&rng) < 0.7;
			}
			snprintf(name, sizeof(name), "b%d_%d_lens.bin", s, j);
			write_raw(dir, name, lens[j], sizeof(int) * n_seqs[j]);
			snprintf(name, sizeof(name), "b%d_%d_tokens.bin", s, j);
			write_raw(dir, name, tokens[s][j], sizeof(int32_t) * T);
			snprintf(name, sizeof(name), "b%d_%d_mask.bin", s, j);
			write_raw(dir, name, mask[s][j], sizeof(int32_t) * T);
		}

	/* logits of every position of b0_0, through the KV-cached decoder */
	if (!lora)
	{
		int			T = 0,
					start = 0;
		float	   *logits;

		for (int q = 0; q < n_seqs[0]; q++)
			T += lens[0][q];
		logits = malloc(sizeof(float) * T * cfg.vocab_size);
		for (int q = 0; q < n_seqs[0]; q++)
		{
			sft_decoder_reset(dec);
			for (int i = 0; i < lens[0][q]; i++)
				if (sft_decoder_feed(dec, &tokens[0][0][start + i], 1,
									 logits + (size_t) (start + i) * cfg.vocab_size, &err) != SFT_OK)
					die(&err);
			start += lens[0][q];
		}
		write_raw(dir, "logits.bin", logits, sizeof(float) * T * cfg.vocab_size);
		free(logits);
	}

	floss = open_text(dir, "loss.txt");
	fsteps = open_text(dir, "steps.txt");
	for (int s = 0; s < N_STEPS; s++)
	{
		double		loss_sum = 0.0,
					norm;
		int64_t		n_targets = 0;
		double		lr = sft_lr_at(SFT_LR_COSINE, 3e-3, s, N_STEPS, 0, 0.1);
		char		name[64];

		for (int j = 0; j < N_MICRO; j++)
		{
			SftBatch	b = {n_seqs[j], lens[j], tokens[s][j], mask[s][j]};
			double		l;
			int64_t		nt;

			if (sft_trainer_accumulate(tr, &b, &l, &nt, &err) != SFT_OK)
				die(&err);
			loss_sum += l;
			n_targets += nt;
			/* the adapter dropout draws of this micro-batch, per layer and module */
			for (int layer = 0; lora && layer < cfg.n_layers; layer++)
				for (int mod = 0; mod < SFT_LORA_N_MODULES; mod++)
				{
					const uint8_t *keep = sft_trainer_lora_dropout_keep(tr, layer, mod);
					int64_t		o_dim,
								in_dim;
					int			T = 0;

					if (keep == NULL)
						continue;
					for (int q = 0; q < n_seqs[j]; q++)
						T += lens[j][q];
					sft_lora_module_shape(&cfg, (SftLoraModule) mod, &o_dim, &in_dim);
					snprintf(name, sizeof(name), "keep%d_%d_%d_%s.bin", s, j, layer,
							 sft_lora_module_name((SftLoraModule) mod));
					write_raw(dir, name, keep, (size_t) T * in_dim);
				}
		}
		if (s == 0)
		{
			double		sq = 0.0;
			const float *g = sft_trainer_grads(tr);

			write_raw(dir, "grads0.bin", g, n * sizeof(float));
			/* clip at 60% of the first step's norm so that clipping is exercised */
			for (size_t i = 0; i < n; i++)
				sq += (double) g[i] * g[i];
			adam.max_grad_norm = 0.6 * sqrt(sq) / (double) n_targets;
		}
		fprintf(floss, "%.17g %lld\n", loss_sum, (long long) n_targets);
		if (sft_trainer_step(tr, n_targets, &adam, lr, &norm, &err) != SFT_OK)
			die(&err);
		fprintf(fsteps, "%.17g %.17g %.17g\n", lr, norm, adam.max_grad_norm);
		snprintf(name, sizeof(name), "params%d.bin", s + 1);
		write_raw(dir, name, p, n * sizeof(float));
	}
	fclose(floss);
	fclose(fsteps);
	if (lora)
		write_raw(dir, "base_after.bin", sft_model_params(m), sft_model_num_params(m) * sizeof(float));
	sft_lora_adapter_free(ad);
	sft_decoder_free(dec);
	sft_trainer_free(tr);
	sft_model_free(m);
	return 0;
}
