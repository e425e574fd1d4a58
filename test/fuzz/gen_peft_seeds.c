/*
 * gen_peft_seeds.c: seed inputs for fuzz_peft (selector byte, u16 length,
 * adapter_config.json, adapter_model.safetensors), written by our own
 * writers for the fuzz target's tiny bases: all-linear, a subset, rslora,
 * PEFT's full key set, and r = 1.
 *
 *   gen_peft_seeds DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_adapter.h"

static const char *BASES[2] = {
	"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
	" \"num_key_value_heads\": 1, \"intermediate_size\": 4, \"vocab_size\": 8}",
	"{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"num_hidden_layers\": 1,"
	" \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 12,"
	" \"vocab_size\": 8, \"tie_word_embeddings\": true}",
};

static void
seed(const char *dir, const char *name, int base, const SftLoraConfig *c, const char *json_override)
{
	SftLlamaConfig mc;
	SftLoraAdapter *a = NULL;
	SftError	err = {0};
	SftBuf		json, st;
	char		path[512];
	FILE	   *f;
	const char *text;
	size_t		len;
	unsigned char head[3];

	sft_llama_config_parse(BASES[base], strlen(BASES[base]), &mc, &err);
	if (sft_lora_adapter_new(c, &mc, &a, &err) != SFT_OK)
	{
		fprintf(stderr, "%s: %s\n", name, err.message);
		exit(1);
	}
	for (size_t i = 0; i < a->n_params; i++)
		a->params[i] = (float) ((int) (i % 7) - 3) / 8;
	sft_buf_init(&json);
	sft_buf_init(&st);
	sft_lora_config_to_json(c, "tiny", &json, &err);
	sft_lora_adapter_write(a, sft_buf_write, &st, &err);
	text = json_override ? json_override : json.data;
	len = strlen(text);
	head[0] = (unsigned char) base;
	head[1] = (unsigned char) (len & 0xff);
	head[2] = (unsigned char) (len >> 8);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL)
	{
		perror(path);
		exit(1);
	}
	fwrite(head, 1, 3, f);
	fwrite(text, 1, len, f);
	fwrite(st.data, 1, st.len, f);
	fclose(f);
	sft_buf_free(&json);
	sft_buf_free(&st);
	sft_lora_adapter_free(a);
}

int
main(int argc, char **argv)
{
	SftLoraConfig all = {.r = 2, .alpha = 4, .targets = SFT_LORA_TARGET_ALL};
	SftLoraConfig sub = {.r = 3, .alpha = 8, .rslora = 1, .dropout = 0.05,
	.targets = SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V) | SFT_LORA_TARGET(SFT_LORA_DOWN)};
	SftLoraConfig one = {.r = 1, .alpha = 1, .targets = SFT_LORA_TARGET(SFT_LORA_K)};

	if (argc != 2)
	{
		fprintf(stderr, "usage: gen_peft_seeds DIR\n");
		return 2;
	}
	seed(argv[1], "llama_all", 0, &all, NULL);
	seed(argv[1], "llama_sub", 0, &sub, NULL);
	seed(argv[1], "qwen2_all", 1, &all, NULL);
	seed(argv[1], "qwen2_one", 1, &one, NULL);
	seed(argv[1], "peft_keys", 0, &one,
		 "{\"alpha_pattern\": {}, \"auto_mapping\": null, \"base_model_name_or_path\": \"x\", \"bias\": \"none\","
		 " \"fan_in_fan_out\": false, \"inference_mode\": true, \"init_lora_weights\": true,"
		 " \"layer_replication\": null, \"layers_pattern\": null, \"layers_to_transform\": null,"
		 " \"loftq_config\": {}, \"lora_alpha\": 1, \"lora_bias\": false, \"lora_dropout\": 0.0,"
		 " \"megatron_config\": null, \"megatron_core\": \"megatron.core\", \"modules_to_save\": null,"
		 " \"peft_type\": \"LORA\", \"r\": 1, \"rank_pattern\": {}, \"revision\": null,"
		 " \"target_modules\": [\"self_attn.k_proj\"], \"task_type\": \"CAUSAL_LM\", \"use_dora\": false,"
		 " \"use_rslora\": false}");
	return 0;
}
