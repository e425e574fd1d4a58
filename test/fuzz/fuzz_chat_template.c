/*
 * fuzz_chat_template.c: libFuzzer target for the chat templates.
 *
 * The input is used twice:
 *   - whole, as a tokenizer_config.json Jinja chat_template for detection
 *     (outside input: it comes from files users import);
 *   - split at 0x00 bytes into message contents (roles system?/user/assistant
 *     alternating, chosen by the first byte), rendered and encoded with each
 *     template (qwen3 included: content may hold <think> parts) on the tiny
 *     fixture tokenizers (test/fixtures, or the directory
 *     in SFT_FIXTURES).
 * Checks: detection returns a valid kind; invalid UTF-8 content is an error,
 * never a crash; for valid content the ids decode to exactly the rendered
 * text (byte-level fixture), ids and mask have one entry each, every mask
 * bit is 0 or 1, a training conversation has at least one bit set, max_length
 * cuts to at most max_length, and the token count agrees with encode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

static SftTokenizer *bpe;
static SftTokenizer *sp;
static SftTokenizer *qwen;

static void
check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static SftTokenizer *
load(const char *dir, const char *name)
{
	char		path[1024];
	FILE	   *f;
	char	   *data;
	long		size;
	SftTokenizer *tok = NULL;
	SftError	err = {0};

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
	{
		fprintf(stderr, "cannot open %s (set SFT_FIXTURES)\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc((size_t) size);
	if (fread(data, 1, (size_t) size, f) != (size_t) size ||
		sft_tokenizer_from_hf(data, (size_t) size, NULL, 0, &tok, &err) != SFT_OK)
	{
		fprintf(stderr, "cannot load %s: %s\n", path, err.message);
		exit(1);
	}
	fclose(f);
	free(data);
	return tok;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("SFT_FIXTURES") ? getenv("SFT_FIXTURES") : "test/fixtures";

	(void) argc;
	(void) argv;
	bpe = load(dir, "tiny_bpe.json");
	sp = load(dir, "tiny_sp.json");
	qwen = load(dir, "tiny_qwen3.json");
	return 0;
}

static void
run_template(const SftChatTemplate *tpl, const SftTokenizer *tok, int exact_decode,
			 const SftConversation *conv, int valid_utf8, int max_length)
{
	SftBuf		text;
	SftEncoded	enc;
	SftError	err = {0};
	SftStatus	st;
	int			ends_with_assistant = conv->messages[conv->n - 1].role == SFT_ROLE_ASSISTANT;

	sft_buf_init(&text);
	sft_encoded_init(&enc);
	st = sft_chat_render(tpl, tok, conv, !ends_with_assistant, &text, &err);
	if (!valid_utf8)
		check(st == SFT_ERR_INVALID);
	if (st == SFT_OK)
	{
		sft_error_clear(&err);
		st = sft_chat_encode(tpl, tok, conv, conv->n % 2 ? SFT_TRAIN_LAST_ASSISTANT
							 : SFT_TRAIN_ALL_ASSISTANT, !ends_with_assistant, 0, &enc, &err);
		/* llama2 refuses two system messages in render already */
		check(st == SFT_OK);
		check(enc.ids.len == enc.mask.len);
		for (size_t t = 0; t < enc.mask.len; t++)
			check(enc.mask.data[t] == 0 || enc.mask.data[t] == 1);
		if (ends_with_assistant)
			check(enc.n_masked > 0);
		if (exact_decode)
		{
			SftBuf		decoded;

			sft_buf_init(&decoded);
			check(sft_tokenizer_decode(tok, enc.ids.data, enc.ids.len, 0, &decoded, &err) == SFT_OK);
			check(decoded.len == text.len && (text.len == 0 || memcmp(decoded.data, text.data, text.len) == 0));
			sft_buf_free(&decoded);
		}
		{
			int64_t		count = -1;

			check(sft_chat_token_count(tpl, tok, conv, !ends_with_assistant, &count, &err) == SFT_OK);
			check(count == (int64_t) enc.ids.len);
		}
		if (ends_with_assistant && max_length > 0)
		{
			SftEncoded	cut;

			sft_encoded_init(&cut);
			check(sft_chat_encode(tpl, tok, conv, SFT_TRAIN_ALL_ASSISTANT, 0, max_length, &cut,
								  &err) == SFT_OK);
			check(cut.ids.len <= (size_t) max_length && cut.ids.len == cut.mask.len);
			check(cut.truncated == (enc.ids.len > (size_t) max_length));
			check(cut.ids.len == 0 ||
				  memcmp(cut.ids.data, enc.ids.data, cut.ids.len * sizeof(int32_t)) == 0);
			sft_encoded_free(&cut);
		}
	}
	sft_encoded_free(&enc);
	sft_buf_free(&text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftTemplateKind kind;
	char	   *system = NULL;
	SftMessage	messages[16];
	SftConversation conv = {messages, 0};
	size_t		start = 1;
	int			with_system;
	int			valid = 1;
	int			max_length;

	/* detection over the raw bytes */
	if (sft_template_detect((const char *) data, size, &kind, &system))
		check(kind == SFT_TEMPLATE_CHATML || kind == SFT_TEMPLATE_LLAMA3 ||
			  kind == SFT_TEMPLATE_LLAMA2 || kind == SFT_TEMPLATE_QWEN3);
	sft_free(system);

	if (size < 2)
		return 0;
	with_system = data[0] & 1;
	max_length = data[0] >> 1;
	for (size_t i = 1; i <= size && conv.n < 16; i++)
	{
		if (i == size || data[i] == 0)
		{
			SftRole		role;

			if (with_system && conv.n == 0)
				role = SFT_ROLE_SYSTEM;
			else
				role = ((conv.n - with_system) % 2 == 0) ? SFT_ROLE_USER : SFT_ROLE_ASSISTANT;
			memset(&messages[conv.n], 0, sizeof(messages[conv.n]));
			messages[conv.n].role = role;
			messages[conv.n].content = (const char *) data + start;
			messages[conv.n].len = i - start;
			if (sft_utf8_invalid_offset(messages[conv.n].content, messages[conv.n].len) != (size_t) -1)
				valid = 0;
			conv.n++;
			start = i + 1;
		}
	}
	if (conv.n <= with_system)
		return 0;				/* no user message: not a conversation */

	{
		static const char sys[] = "Default system.";
		SftChatTemplate templates[] = {
			{SFT_TEMPLATE_CHATML, NULL, 0},
			{SFT_TEMPLATE_CHATML, sys, sizeof(sys) - 1},
			{SFT_TEMPLATE_LLAMA3, sys, sizeof(sys) - 1},
			{SFT_TEMPLATE_LLAMA2, NULL, 0},
		};

		for (int t = 0; t < 4; t++)
			run_template(&templates[t], bpe, 1, &conv, valid, max_length);
		run_template(&templates[3], sp, 0, &conv, valid, max_length);
		{
			SftChatTemplate q = {SFT_TEMPLATE_QWEN3, NULL, 0};

			run_template(&q, qwen, 1, &conv, valid, max_length);
		}
	}
	return 0;
}
