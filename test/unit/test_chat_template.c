/*
 * test_chat_template.c: unit tests of the built-in chat templates, their
 * detection from Jinja text, and the assistant-only loss mask, over the tiny
 * synthetic tokenizers in test/fixtures/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "tap.h"

static char fixture_dir[1024];

static char *
read_file(const char *name, size_t *len)
{
	char		path[1200];
	FILE	   *f;
	char	   *data;
	long		size;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc((size_t) size + 1);
	if (fread(data, 1, (size_t) size, f) != (size_t) size)
		size = 0;
	fclose(f);
	data[size] = '\0';
	if (len)
		*len = (size_t) size;
	return data;
}

static SftTokenizer *
load(const char *json_name, const char *config_name)
{
	size_t		jl,
				cl = 0;
	char	   *json = read_file(json_name, &jl);
	char	   *config = config_name ? read_file(config_name, &cl) : NULL;
	SftTokenizer *tok = NULL;
	SftError	err = {0};

	if (json == NULL || sft_tokenizer_from_hf(json, jl, config, cl, &tok, &err) != SFT_OK)
	{
		printf("# could not load %s: %s\n", json_name, err.message);
		tok = NULL;
	}
	free(json);
	free(config);
	return tok;
}

/* A conversation from alternating role/content C strings, NULL-terminated. */
#define MAX_MSG 16
typedef struct Conv
{
	SftMessage	m[MAX_MSG];
	SftConversation c;
} Conv;

static SftConversation *
conv_make(Conv *cv, const char *const *pairs)
{
	int			n = 0;

	for (; pairs[2 * n]; n++)
	{
		memset(&cv->m[n], 0, sizeof(cv->m[n]));
		cv->m[n].role = (SftRole) sft_role_parse(pairs[2 * n], strlen(pairs[2 * n]));
		cv->m[n].content = pairs[2 * n + 1];
		cv->m[n].len = strlen(pairs[2 * n + 1]);
	}
	cv->c.messages = cv->m;
	cv->c.n = n;
	return &cv->c;
}

static int
render_is(const SftChatTemplate *tpl, const SftTokenizer *tok, const SftConversation *conv,
		  int gen, const char *expected)
{
	SftBuf		out;
	SftError	err = {0};
	int			ok;

	sft_buf_init(&out);
	ok = sft_chat_render(tpl, tok, conv, gen, &out, &err) == SFT_OK &&
		out.len == strlen(expected) && memcmp(out.data, expected, out.len) == 0;
	if (!ok)
		printf("# got %s (%s)\n# expected %s\n", out.data ? out.data : "(null)", err.message,
			   expected);
	sft_buf_free(&out);
	return ok;
}

static int32_t
id_of(const SftTokenizer *tok, const char *s)
{
	return sft_tokenizer_token_to_id(tok, s, strlen(s));
}

/* The text of tokens [from, to) of enc, decoded. */
static char *
decode_range(const SftTokenizer *tok, const SftEncoded *enc, size_t from, size_t to)
{
	SftBuf		out;
	SftError	err = {0};
	char	   *s;

	sft_buf_init(&out);
	if (to > from)
		sft_tokenizer_decode(tok, enc->ids.data + from, to - from, 0, &out, &err);
	s = strdup(out.data ? out.data : "");
	sft_buf_free(&out);
	return s;
}

/* Concatenated text of the masked-in tokens (decoded one by one). */
static char *
masked_text(const SftTokenizer *tok, const SftEncoded *enc)
{
	SftBuf		out;
	SftError	err = {0};
	char	   *s;

	sft_buf_init(&out);
	for (size_t t = 0; t < enc->ids.len; t++)
		if (enc->mask.data[t])
			sft_tokenizer_decode(tok, &enc->ids.data[t], 1, 0, &out, &err);
	s = strdup(out.data ? out.data : "");
	sft_buf_free(&out);
	return s;
}

/* ---------------------------------------------------------------------------
 * Names and detection
 * ------------------------------------------------------------------------- */

static void
test_names(void)
{
	SftTemplateKind k;
	SftError	err = {0};

	TAP_OK(sft_template_from_name("chatml", &k, &err) == SFT_OK && k == SFT_TEMPLATE_CHATML,
		   "chatml by name");
	TAP_OK(sft_template_from_name("llama3", &k, &err) == SFT_OK && k == SFT_TEMPLATE_LLAMA3,
		   "llama3 by name");
	TAP_OK(sft_template_from_name("llama2", &k, &err) == SFT_OK && k == SFT_TEMPLATE_LLAMA2,
		   "llama2 by name");
	TAP_OK(sft_template_from_name("qwen3", &k, &err) == SFT_OK && k == SFT_TEMPLATE_QWEN3,
		   "qwen3 by name");
	TAP_OK(sft_template_from_name("ChatML", &k, &err) == SFT_ERR_INVALID &&
		   strstr(err.message, "chatml, llama3, llama2, qwen3") != NULL,
		   "unknown name lists the valid ones: %s", err.message);
	TAP_OK(strcmp(sft_template_name(SFT_TEMPLATE_LLAMA2), "llama2") == 0, "name of a kind");
	TAP_OK(strcmp(sft_template_end_of_turn_token(SFT_TEMPLATE_LLAMA3), "<|eot_id|>") == 0,
		   "llama3 turn ends with <|eot_id|>");
}

static int
detects(const char *jinja, int expect_found, SftTemplateKind expect_kind,
		const char *expect_system)
{
	SftTemplateKind kind = (SftTemplateKind) -1;
	char	   *system = NULL;
	int			found = sft_template_detect(jinja, strlen(jinja), &kind, &system);
	int			ok = found == expect_found;

	if (ok && found)
		ok = kind == expect_kind &&
			((expect_system == NULL && system == NULL) ||
			 (expect_system && system && strcmp(system, expect_system) == 0));
	if (!ok)
		printf("# detect: found %d kind %d system %s\n", found, (int) kind,
			   system ? system : "(none)");
	sft_free(system);
	return ok;
}

static void
test_detection(void)
{
	char	   *config;

	/* the fixtures' configs carry templates in the published shapes */
	config = read_file("tiny_config_chatml.json", NULL);
	TAP_OK(config != NULL, "fixture config readable");
	free(config);

	/* SmolLM2 shape: literal newlines inside the Jinja strings, a default system */
	TAP_OK(detects("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
				   "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
				   "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
				   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
				   1, SFT_TEMPLATE_CHATML,
				   "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
		   "SmolLM2-style chatml with its default system prompt");
	/* Qwen2-style: escaped newlines, whitespace control, message.role */
	TAP_OK(detects("{%- for message in messages %}\n    {%- if loop.first and messages[0].role != \"system\" %}\n"
				   "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n"
				   "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
				   "{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
				   1, SFT_TEMPLATE_CHATML, "You are a helpful assistant."),
		   "Qwen-style chatml (escapes, dashes, message.role)");
	TAP_OK(detects("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
				   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
				   1, SFT_TEMPLATE_CHATML, NULL),
		   "chatml without a default system prompt");
	TAP_OK(detects("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
				   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}",
				   0, 0, NULL),
		   "chatml with think blocks is not plain chatml");
	TAP_OK(detects("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n'}}"
				   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
				   0, 0, NULL),
		   "chatml that trims content is not ours");
	TAP_OK(detects("{% set loop_messages = messages %}{% for message in loop_messages %}"
				   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
				   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
				   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
				   1, SFT_TEMPLATE_LLAMA3, NULL),
		   "Llama 3 Instruct");
	TAP_OK(detects("{% set loop_messages = messages %}{% for message in loop_messages %}"
				   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
				   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
				   "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
				   0, 0, NULL),
		   "Llama 3 base template (header always appended) is not ours");
	TAP_OK(detects("{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}"
				   "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
				   "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
				   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
				   0, 0, NULL),
		   "Llama 3.1 system header is not ours");
	TAP_OK(detects("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
				   "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
				   "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
				   "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
				   "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
				   "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
				   "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
				   1, SFT_TEMPLATE_LLAMA2, NULL),
		   "Llama 2 chat");
	TAP_OK(detects("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
				   "{% else %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}", 0, 0, NULL),
		   "Mistral [INST] template is not llama2");
	TAP_OK(detects("", 0, 0, NULL), "empty template");
	TAP_OK(detects("{{ unterminated '<|im_start|>", 0, 0, NULL), "unterminated tag");
	TAP_OK(detects("{% '\\", 0, 0, NULL), "unterminated literal with escape");

	/* the published templates themselves are detected in test/suites/template_parity.sh */
}

/* ---------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------- */

static void
test_render(const SftTokenizer *bpe)
{
	SftChatTemplate chatml = {SFT_TEMPLATE_CHATML, NULL, 0};
	SftChatTemplate smol = {SFT_TEMPLATE_CHATML, "You are tiny.", 13};
	SftChatTemplate llama3 = {SFT_TEMPLATE_LLAMA3, NULL, 0};
	SftChatTemplate llama2 = {SFT_TEMPLATE_LLAMA2, NULL, 0};
	SftChatTemplate llama2_sys = {SFT_TEMPLATE_LLAMA2, "Be brief.", 9};
	Conv		a,
				b,
				c,
				d;
	const char *one[] = {"user", "Hi", "assistant", "Hello!", NULL};
	const char *sys[] = {"system", "Be nice.", "user", " Hi there ", "assistant", "\tHello! \n",
	"user", "2+2?", "assistant", "4", NULL};
	const char *prompt[] = {"user", "Hi", NULL};
	const char *spaces[] = {"user", "\xe3\x80\x80 x \x1c", "assistant", "\xef\xbb\xbfy\xc2\x85", NULL};
	SftConversation *c1 = conv_make(&a, one);
	SftConversation *c2 = conv_make(&b, sys);
	SftConversation *c3 = conv_make(&c, prompt);
	SftConversation *c4 = conv_make(&d, spaces);

	TAP_OK(render_is(&chatml, bpe, c1, 0,
					 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"),
		   "chatml render");
	TAP_OK(render_is(&chatml, bpe, c3, 1,
					 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
		   "chatml generation prompt");
	TAP_OK(render_is(&smol, bpe, c1, 0,
					 "<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
					 "<|im_start|>assistant\nHello!<|im_end|>\n"),
		   "chatml default system inserted");
	TAP_OK(render_is(&smol, bpe, c2, 0,
					 "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\n Hi there <|im_end|>\n"
					 "<|im_start|>assistant\n\tHello! \n<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
					 "<|im_start|>assistant\n4<|im_end|>\n"),
		   "chatml keeps an explicit system and the content verbatim");
	TAP_OK(render_is(&llama3, bpe, c2, 0,
					 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe nice.<|eot_id|>"
					 "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
					 "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
					 "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
					 "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"),
		   "llama3 render trims content");
	TAP_OK(render_is(&llama3, bpe, c3, 1,
					 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
					 "<|start_header_id|>assistant<|end_header_id|>\n\n"),
		   "llama3 generation prompt");
	TAP_OK(render_is(&llama2, bpe, c2, 0,
					 "<s>[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\n Hi there [/INST] Hello! </s>"
					 "<s>[INST] 2+2? [/INST] 4 </s>"),
		   "llama2 render with system (strip() applies to the joined text)");
	TAP_OK(render_is(&llama2_sys, bpe, c1, 0,
					 "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"),
		   "llama2 default system");
	TAP_OK(render_is(&llama2, bpe, c3, 1, "<s>[INST] Hi [/INST]"),
		   "llama2 has no generation prompt beyond [/INST]");
	/* Python str.strip(): U+3000 and U+001C are whitespace, U+FEFF is not, U+0085 is */
	TAP_OK(render_is(&llama3, bpe, c4, 0,
					 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>"
					 "<|start_header_id|>assistant<|end_header_id|>\n\n\xef\xbb\xbfy<|eot_id|>"),
		   "strip follows Python's whitespace");

	{
		const char *two_sys[] = {"system", "a", "system", "b", "user", "u", "assistant", "x", NULL};
		Conv		e;
		SftConversation *c5 = conv_make(&e, two_sys);
		SftBuf		out;
		SftError	err = {0};

		TAP_OK(render_is(&chatml, bpe, c5, 0,
						 "<|im_start|>system\na<|im_end|>\n<|im_start|>system\nb<|im_end|>\n"
						 "<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n"),
			   "chatml renders each system message");
		sft_buf_init(&out);
		TAP_OK(sft_chat_render(&llama2, bpe, c5, 0, &out, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "one system message"),
			   "llama2 refuses two system messages: %s", err.message);
		sft_buf_free(&out);
	}
	{
		const char *bad[] = {"assistant", "x", NULL};
		const char *utf[] = {"user", "a\xff", "assistant", "b", NULL};
		Conv		e;
		SftBuf		out;
		SftError	err = {0};

		sft_buf_init(&out);
		TAP_OK(sft_chat_render(&chatml, bpe, conv_make(&e, bad), 0, &out, &err) == SFT_ERR_INVALID,
			   "render checks the conversation shape: %s", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_chat_render(&chatml, bpe, conv_make(&e, utf), 0, &out, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "message 0") && strstr(err.message, "UTF-8"),
			   "render rejects invalid UTF-8 naming the message: %s", err.message);
		sft_buf_free(&out);
	}
}

/* ---------------------------------------------------------------------------
 * Encoding and masks
 * ------------------------------------------------------------------------- */

static void
test_encode_chatml(const SftTokenizer *bpe)
{
	SftChatTemplate chatml = {SFT_TEMPLATE_CHATML, "You are tiny.", 13};
	const char *two[] = {"user", "Hello!", "assistant", "The sea is wide.", "user",
	"And the user?", "assistant", "Thanks, here it is.", NULL};
	Conv		a;
	SftConversation *conv = conv_make(&a, two);
	SftEncoded	enc,
				last;
	SftError	err = {0};
	int32_t		im_start = id_of(bpe, "<|im_start|>");
	int32_t		im_end = id_of(bpe, "<|im_end|>");
	int			headers_zero = 1;
	int			ends_ok = 1;
	int			n_im_end_masked = 0;
	char	   *text;

	sft_encoded_init(&enc);
	sft_encoded_init(&last);
	TAP_OK(sft_chat_encode(&chatml, bpe, conv, SFT_TRAIN_ALL_ASSISTANT, 0, 0, &enc, &err) == SFT_OK,
		   "chatml encode: %s", err.message);
	TAP_OK(enc.ids.len == enc.mask.len && enc.ids.len > 20, "one mask bit per token (%zu)",
		   enc.ids.len);

	/* decoding the ids gives back the rendered text */
	{
		SftBuf		rendered;

		sft_buf_init(&rendered);
		sft_chat_render(&chatml, bpe, conv, 0, &rendered, &err);
		text = decode_range(bpe, &enc, 0, enc.ids.len);
		TAP_OK(strcmp(text, rendered.data) == 0, "ids decode to the rendered text");
		free(text);
		sft_buf_free(&rendered);
	}

	/* every <|im_start|> and the role word plus newline after it are 0 */
	for (size_t t = 0; t < enc.ids.len; t++)
	{
		if (enc.ids.data[t] == im_start)
		{
			if (enc.mask.data[t] != 0)
				headers_zero = 0;
			/* role word and "\n" up to the content */
			for (size_t u = t + 1; u < enc.ids.len && u < t + 3; u++)
			{
				char	   *piece = decode_range(bpe, &enc, u, u + 1);

				if ((strcmp(piece, "assistant") == 0 || strcmp(piece, "user") == 0 ||
					 strcmp(piece, "system") == 0 || strcmp(piece, "\n") == 0) && enc.mask.data[u])
					headers_zero = 0;
				free(piece);
			}
		}
		if (enc.ids.data[t] == im_end)
		{
			/* the token after <|im_end|> is "\n" and never trained */
			if (t + 1 < enc.ids.len && enc.mask.data[t + 1] != 0)
				ends_ok = 0;
			if (enc.mask.data[t])
				n_im_end_masked++;
		}
	}
	TAP_OK(headers_zero, "role headers are 0");
	TAP_OK(ends_ok, "the newline after <|im_end|> is 0");
	TAP_OK(n_im_end_masked == 2, "the <|im_end|> after each assistant reply is 1 (%d)",
		   n_im_end_masked);
	TAP_OK(enc.mask.data[enc.ids.len - 2] == 1 && enc.ids.data[enc.ids.len - 2] == im_end,
		   "the final <|im_end|> (also eos and pad here) keeps its label");
	text = masked_text(bpe, &enc);
	TAP_OK(strcmp(text, "The sea is wide.<|im_end|>Thanks, here it is.<|im_end|>") == 0,
		   "masked tokens are exactly both replies and their end tokens: %s", text);
	free(text);
	TAP_OK(enc.n_masked > 0 && !enc.truncated, "n_masked counted, not truncated");

	TAP_OK(sft_chat_encode(&chatml, bpe, conv, SFT_TRAIN_LAST_ASSISTANT, 0, 0, &last, &err) == SFT_OK,
		   "last_assistant encode");
	TAP_OK(last.ids.len == enc.ids.len &&
		   memcmp(last.ids.data, enc.ids.data, enc.ids.len * sizeof(int32_t)) == 0,
		   "train_on does not change the ids");
	text = masked_text(bpe, &last);
	TAP_OK(strcmp(text, "Thanks, here it is.<|im_end|>") == 0,
		   "last_assistant trains only the final reply: %s", text);
	free(text);

	/* the generation prompt is a token prefix of the full conversation */
	{
		const char *p[] = {"user", "Hello!", "assistant", "The sea is wide.", "user",
		"And the user?", NULL};
		Conv		b;
		SftEncoded	prompt;

		sft_encoded_init(&prompt);
		TAP_OK(sft_chat_encode(&chatml, bpe, conv_make(&b, p), SFT_TRAIN_ALL_ASSISTANT, 1, 0,
							   &prompt, &err) == SFT_OK, "encode a prompt: %s", err.message);
		TAP_OK(prompt.ids.len < enc.ids.len &&
			   memcmp(prompt.ids.data, enc.ids.data, prompt.ids.len * sizeof(int32_t)) == 0,
			   "prompt ids are a prefix of the conversation ids");
		sft_error_clear(&err);
		TAP_OK(sft_chat_encode(&chatml, bpe, conv, SFT_TRAIN_ALL_ASSISTANT, 1, 0, &prompt,
							   &err) == SFT_ERR_INVALID,
			   "a prompt must end with a user message: %s", err.message);
		sft_encoded_free(&prompt);
	}

	/* truncation */
	{
		SftEncoded	cut;

		sft_encoded_init(&cut);
		sft_error_clear(&err);
		TAP_OK(sft_chat_encode(&chatml, bpe, conv, SFT_TRAIN_ALL_ASSISTANT, 0, 10, &cut, &err) == SFT_OK &&
			   cut.ids.len == 10 && cut.mask.len == 10 && cut.truncated,
			   "max_length cuts and says so");
		TAP_OK(cut.n_masked == 0, "a cut that keeps no reply has n_masked 0 for the caller to report");
		sft_chat_encode(&chatml, bpe, conv, SFT_TRAIN_ALL_ASSISTANT, 0, (int) enc.ids.len, &cut, &err);
		TAP_OK(!cut.truncated && cut.ids.len == enc.ids.len, "max_length equal to the length is no cut");
		sft_encoded_free(&cut);
	}

	/* special-token text typed by the user stays text */
	{
		const char *inj[] = {"user", "<|im_end|>", "assistant", "ok", NULL};
		Conv		b;
		SftEncoded	e;
		int			n_end = 0;

		sft_encoded_init(&e);
		sft_chat_encode(&chatml, bpe, conv_make(&b, inj), SFT_TRAIN_ALL_ASSISTANT, 0, 0, &e, &err);
		for (size_t t = 0; t < e.ids.len; t++)
			n_end += e.ids.data[t] == im_end;
		TAP_OK(n_end == 3, "user text \"<|im_end|>\" is not the special token (%d ends)", n_end);
		sft_encoded_free(&e);
	}

	/* a training conversation must end with an assistant reply */
	{
		const char *no[] = {"user", "Hello!", NULL};
		Conv		b;
		SftEncoded	e;

		sft_encoded_init(&e);
		sft_error_clear(&err);
		TAP_OK(sft_chat_encode(&chatml, bpe, conv_make(&b, no), SFT_TRAIN_ALL_ASSISTANT, 0, 0, &e,
							   &err) == SFT_ERR_INVALID && strstr(err.message, "assistant"),
			   "no assistant message is an error: %s", err.message);
		sft_encoded_free(&e);
	}

	/* token counts agree with encode */
	{
		int64_t		count = -1;

		TAP_OK(sft_chat_token_count(&chatml, bpe, conv, 0, &count, &err) == SFT_OK &&
			   count == (int64_t) enc.ids.len, "token count = encoded length (%lld)",
			   (long long) count);
	}
	sft_encoded_free(&enc);
	sft_encoded_free(&last);
}

static void
test_encode_llama3(const SftTokenizer *bpe)
{
	SftChatTemplate llama3 = {SFT_TEMPLATE_LLAMA3, NULL, 0};
	const char *two[] = {"system", "Be nice.", "user", "Hello!", "assistant", "  The sea.  ",
	"user", "More?", "assistant", "Sure.", NULL};
	Conv		a;
	SftEncoded	enc;
	SftError	err = {0};
	char	   *text;
	int32_t		eot = id_of(bpe, "<|eot_id|>");
	int32_t		bot = id_of(bpe, "<|begin_of_text|>");
	int			eot_masked = 0;

	sft_encoded_init(&enc);
	TAP_OK(sft_chat_encode(&llama3, bpe, conv_make(&a, two), SFT_TRAIN_ALL_ASSISTANT, 0, 0, &enc,
						   &err) == SFT_OK, "llama3 encode: %s", err.message);
	TAP_OK(enc.ids.data[0] == bot && enc.mask.data[0] == 0, "starts with <|begin_of_text|>, 0");
	text = masked_text(bpe, &enc);
	TAP_OK(strcmp(text, "The sea.<|eot_id|>Sure.<|eot_id|>") == 0,
		   "llama3 mask: trimmed replies and <|eot_id|>: %s", text);
	free(text);
	for (size_t t = 0; t < enc.ids.len; t++)
		if (enc.ids.data[t] == eot)
			eot_masked += enc.mask.data[t];
	TAP_OK(eot_masked == 2, "<|eot_id|> of system and user turns are 0");
	sft_encoded_free(&enc);
}

static void
test_encode_llama2(const SftTokenizer *sp)
{
	SftChatTemplate llama2 = {SFT_TEMPLATE_LLAMA2, NULL, 0};
	const char *two[] = {"system", "Be nice.", "user", "Hello!", "assistant", "The sea is wide.",
	"user", "Thanks", "assistant", "Sure, here it is.", NULL};
	const char *prompt[] = {"system", "Be nice.", "user", "Hello!", NULL};
	Conv		a,
				b;
	SftEncoded	enc,
				pe;
	SftError	err = {0};
	char	   *text;
	int32_t		eos = id_of(sp, "</s>");
	int32_t		bos = id_of(sp, "<s>");
	int32_t		space = id_of(sp, "\xe2\x96\x81");

	sft_encoded_init(&enc);
	sft_encoded_init(&pe);
	TAP_OK(sft_chat_encode(&llama2, sp, conv_make(&a, two), SFT_TRAIN_ALL_ASSISTANT, 0, 0, &enc,
						   &err) == SFT_OK, "llama2 encode: %s", err.message);
	TAP_OK(enc.ids.data[0] == bos && enc.mask.data[0] == 0, "starts with <s>, 0");
	TAP_OK(enc.ids.data[enc.ids.len - 1] == eos && enc.mask.data[enc.ids.len - 1] == 1,
		   "ends with </s>, 1");
	TAP_OK(enc.ids.data[enc.ids.len - 2] == space && enc.mask.data[enc.ids.len - 2] == 1,
		   "the lone \"\xe2\x96\x81\" before </s> is trained");
	text = masked_text(sp, &enc);
	/* the decoder strips one leading space per decode call: pieces lose theirs */
	TAP_OK(strstr(text, "The") != NULL && strstr(text, "Hello") == NULL &&
		   strstr(text, "INST") == NULL && strstr(text, "SYS") == NULL,
		   "llama2 mask covers replies, not prompts: %s", text);
	free(text);
	TAP_OK(sft_chat_encode(&llama2, sp, conv_make(&b, prompt), SFT_TRAIN_ALL_ASSISTANT, 1, 0, &pe,
						   &err) == SFT_OK && pe.ids.len < enc.ids.len &&
		   memcmp(pe.ids.data, enc.ids.data, pe.ids.len * sizeof(int32_t)) == 0,
		   "llama2 prompt ids are a prefix of the conversation ids");
	/* the first reply token carries the space that follows [/INST] */
	{
		size_t		first = pe.ids.len;

		TAP_OK(enc.mask.data[first] == 1 && enc.mask.data[first - 1] == 0,
			   "the first reply token is 1, \"]\" before it 0");
	}
	sft_encoded_free(&enc);
	sft_encoded_free(&pe);
}

static void
test_qwen3(const SftTokenizer *q)
{
	SftChatTemplate qwen3 = {SFT_TEMPLATE_QWEN3, NULL, 0};
	Conv		a,
				b,
				c,
				d;
	const char *one[] = {"user", "Hi", "assistant", "Hello!", NULL};
	const char *two[] = {"system", "Be nice.", "user", "Hi", "assistant",
		"<think>\nfirst plan\n</think>\n\nHello!", "user", "More?", "assistant",
	"<think>\n\nsecond plan\n\n</think>\n\n\nSure.", NULL};
	const char *tool[] = {"user", "q", "assistant", "<think>r</think>a", "user",
	"<tool_response>x</tool_response>", "assistant", "b", NULL};
	const char *prompt[] = {"user", "Hi", "assistant", "<think>plan</think>Hello!", "user", "More?", NULL};
	SftEncoded	enc;
	SftError	err = {0};
	char	   *text;

	TAP_OK(render_is(&qwen3, q, conv_make(&a, one), 0,
					 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
					 "Hello!<|im_end|>\n"),
		   "qwen3: the final reply gets an empty think block");
	TAP_OK(render_is(&qwen3, q, conv_make(&b, two), 0,
					 "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
					 "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nMore?<|im_end|>\n"
					 "<|im_start|>assistant\n<think>\nsecond plan\n</think>\n\nSure.<|im_end|>\n"),
		   "qwen3: earlier reasoning dropped, the last kept and stripped of newlines");
	TAP_OK(render_is(&qwen3, q, conv_make(&c, tool), 0,
					 "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\na<|im_end|>\n"
					 "<|im_start|>user\n<tool_response>x</tool_response><|im_end|>\n"
					 "<|im_start|>assistant\n<think>\n\n</think>\n\nb<|im_end|>\n"),
		   "qwen3: a tool response is not a query; replies after the query keep their reasoning");
	TAP_OK(render_is(&qwen3, q, conv_make(&d, prompt), 1,
					 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
					 "<|im_start|>user\nMore?<|im_end|>\n<|im_start|>assistant\n"),
		   "qwen3: generation prompt");

	sft_encoded_init(&enc);
	TAP_OK(sft_chat_encode(&qwen3, q, conv_make(&b, two), SFT_TRAIN_ALL_ASSISTANT, 0, 0, &enc, &err) == SFT_OK,
		   "qwen3 encode: %s", err.message);
	text = masked_text(q, &enc);
	TAP_OK(strcmp(text, "Hello!<|im_end|><think>\nsecond plan\n</think>\n\nSure.<|im_end|>") == 0,
		   "qwen3 mask: replies, the think block and <|im_end|>");
	free(text);
	{
		int			think_ids = 0;

		for (size_t t = 0; t < enc.ids.len; t++)
			think_ids += enc.ids.data[t] == id_of(q, "<think>") || enc.ids.data[t] == id_of(q, "</think>");
		TAP_OK(think_ids == 2, "<think> and </think> are single tokens (%d)", think_ids);
	}
	{
		SftEncoded	pe;

		sft_encoded_init(&pe);
		const char *p2[] = {"system", "Be nice.", "user", "Hi", "assistant",
		"<think>\nfirst plan\n</think>\n\nHello!", "user", "More?", NULL};

		TAP_OK(sft_chat_encode(&qwen3, q, conv_make(&a, p2), SFT_TRAIN_ALL_ASSISTANT, 1, 0, &pe, &err) == SFT_OK &&
			   pe.ids.len < enc.ids.len &&
			   memcmp(pe.ids.data, enc.ids.data, pe.ids.len * sizeof(int32_t)) == 0,
			   "qwen3 prompt ids are a prefix of the conversation ids");
		sft_encoded_free(&pe);
	}
	sft_encoded_free(&enc);
	TAP_OK(sft_template_check_tokenizer(SFT_TEMPLATE_QWEN3, q, &err) == SFT_OK,
		   "qwen3 fixture has the think tokens");
}

static void
test_missing_tokens(void)
{
	size_t		vl,
				ml;
	char	   *vocab = read_file("tiny_vocab.json", &vl);
	char	   *merges = read_file("tiny_merges.txt", &ml);
	SftTokenizer *plain = NULL;
	SftError	err = {0};

	if (vocab && merges &&
		sft_tokenizer_from_vocab_merges(vocab, vl, merges, ml, &plain, &err) == SFT_OK)
	{
		SftChatTemplate llama3 = {SFT_TEMPLATE_LLAMA3, NULL, 0};
		const char *one[] = {"user", "Hi", "assistant", "Hello!", NULL};
		Conv		a;
		SftEncoded	enc;

		TAP_OK(sft_template_check_tokenizer(SFT_TEMPLATE_CHATML, plain, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "<|im_start|>"),
			   "a tokenizer without the template's tokens is refused: %s", err.message);
		sft_error_clear(&err);
		sft_encoded_init(&enc);
		TAP_OK(sft_chat_encode(&llama3, plain, conv_make(&a, one), SFT_TRAIN_ALL_ASSISTANT, 0, 0,
							   &enc, &err) == SFT_ERR_INVALID,
			   "encode names the missing token: %s", err.message);
		TAP_OK(sft_template_end_of_turn_id(SFT_TEMPLATE_LLAMA3, plain) == -1,
			   "no end-of-turn id without the token");
		sft_encoded_free(&enc);
		sft_tokenizer_free(plain);
	}
	else
		TAP_OK(0, "vocab.json + merges.txt fixture loads: %s", err.message);
	free(vocab);
	free(merges);
}

/* Templates written back as Jinja are detected as what they came from. */
static void
test_jinja_round_trip(void)
{
	static const char *const defaults[] = {NULL, "You are tiny.",
	"It's a \"quoted\"\tprompt\nwith a back\\slash and \xe6\xbc\xa2\xe5\xad\x97"};
	SftTemplateKind kinds[] = {SFT_TEMPLATE_CHATML, SFT_TEMPLATE_LLAMA3, SFT_TEMPLATE_LLAMA2};

	for (int k = 0; k < 3; k++)
		for (int d = 0; d < 3; d++)
		{
			SftChatTemplate tpl = {kinds[k], defaults[d], defaults[d] ? strlen(defaults[d]) : 0};
			SftBuf		jinja;
			SftError	err = {0};
			SftTemplateKind got = (SftTemplateKind) -1;
			char	   *system = NULL;
			int			ok;

			sft_buf_init(&jinja);
			ok = sft_template_jinja(&tpl, &jinja, &err) == SFT_OK &&
				sft_template_detect(jinja.data, jinja.len, &got, &system) && got == kinds[k] &&
				((defaults[d] == NULL && system == NULL) ||
				 (defaults[d] && system && strcmp(system, defaults[d]) == 0));
			TAP_OK(ok, "%s with default system %d: Jinja detected back", sft_template_name(kinds[k]), d);
			sft_free(system);
			sft_buf_free(&jinja);
		}
	{
		SftChatTemplate tpl = {SFT_TEMPLATE_QWEN3, NULL, 0};
		SftBuf		jinja;
		SftError	err = {0};

		sft_buf_init(&jinja);
		TAP_OK(sft_template_jinja(&tpl, &jinja, &err) == SFT_ERR_UNSUPPORTED,
			   "qwen3 has no built-in Jinja form: %s", err.message);
		sft_buf_free(&jinja);
	}
}

/* Random Jinja-ish bytes through detection: never crashes, never leaks into a kind. */
static void
test_detect_noise(void)
{
	static const char *const parts[] = {"{{", "}}", "{%", "%}", "{#", "#}", "'", "\"", "\\",
		"-", "+", " ", "\n", "<|im_start|>", "<|im_end|>", "message['role']", "message.content",
	"add_generation_prompt", "if", "system\n", "\xff", "\\n", "trim", "<<SYS>>", "[INST]"};
	SftRng		rng;
	int			crashes_free = 1;

	sft_rng_seed(&rng, 7);
	for (int iter = 0; iter < 20000; iter++)
	{
		char		buf[512];
		size_t		len = 0;
		int			n = (int) (sft_rng_next(&rng) % 40);
		SftTemplateKind kind;
		char	   *system = NULL;

		for (int i = 0; i < n; i++)
		{
			const char *p = parts[sft_rng_next(&rng) % (sizeof(parts) / sizeof(parts[0]))];
			size_t		pl = strlen(p);

			if (len + pl >= sizeof(buf))
				break;
			memcpy(buf + len, p, pl);
			len += pl;
		}
		/* not NUL-terminated on purpose: the length is the contract */
		if (sft_template_detect(buf, len, &kind, &system) && system == NULL && kind > 2)
			crashes_free = 0;
		sft_free(system);
	}
	TAP_OK(crashes_free, "20000 random templates through detection");
}

int
main(int argc, char **argv)
{
	SftTokenizer *bpe;
	SftTokenizer *sp;
	const char *slash = strrchr(argv[0], '/');

	(void) argc;
	if (getenv("SFT_FIXTURES"))
		snprintf(fixture_dir, sizeof(fixture_dir), "%s", getenv("SFT_FIXTURES"));
	else if (slash)
		snprintf(fixture_dir, sizeof(fixture_dir), "%.*s/../fixtures", (int) (slash - argv[0]),
				 argv[0]);
	else
		snprintf(fixture_dir, sizeof(fixture_dir), "../fixtures");

	test_names();
	test_detection();
	test_detect_noise();
	test_jinja_round_trip();

	bpe = load("tiny_bpe.json", "tiny_config_chatml.json");
	sp = load("tiny_sp.json", "tiny_config_llama2.json");
	TAP_OK(bpe != NULL, "byte-level fixture loads");
	TAP_OK(sp != NULL, "sentencepiece fixture loads");
	if (bpe)
	{
		test_render(bpe);
		test_encode_chatml(bpe);
		test_encode_llama3(bpe);
	}
	if (sp)
		test_encode_llama2(sp);
	{
		SftTokenizer *q = load("tiny_qwen3.json", NULL);

		TAP_OK(q != NULL, "qwen3 fixture loads");
		if (q)
		{
			SftError	err = {0};

			test_qwen3(q);
			TAP_OK(sft_template_check_tokenizer(SFT_TEMPLATE_QWEN3, bpe, &err) == SFT_ERR_INVALID &&
				   strstr(err.message, "<think>"), "qwen3 needs <think>: %s", err.message);
		}
		sft_tokenizer_free(q);
	}
	test_missing_tokens();
	sft_tokenizer_free(bpe);
	sft_tokenizer_free(sp);
	return tap_done();
}
