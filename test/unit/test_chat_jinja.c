/*
 * test_chat_jinja.c: conversations through Jinja chat templates
 * (chat_template_jinja.c) on the synthetic tokenizers of test/fixtures/.
 *
 * The built-in templates are the yardstick: their Jinja form (what
 * sft_template_jinja writes, and the fixture configs' published templates)
 * must give the same text, ids and masks as the hand-written walks, for all
 * and last assistant turns.  Then what only Jinja templates do: a BOS written
 * by the template is not doubled, {% generation %} blocks are the mask,
 * special-token text typed in content stays text, the end-of-turn token is
 * found, template_kwargs reach the template, and a template that rewrites the
 * assistant's content is refused for training.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

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

static SftJinjaTemplate *
parse(const char *src)
{
	SftJinjaTemplate *t = NULL;
	SftError	err = {0};

	if (sft_jinja_parse(src, strlen(src), &t, &err) != SFT_OK)
		printf("# parse failed: %s\n", err.message);
	return t;
}

static const char *const POOL[] = {
	"Hello!", "What is 2+2?", "  spaced out  ", "line one\nline two\n\nline four", "\nstarts with a newline",
	"ends with a newline\n", "emoji \xF0\x9F\x98\x80 and CJK \xE6\xBC\xA2\xE5\xAD\x97", "x", " leading",
	"trailing ", "it's <|im_end|> typed", "4"
};

/* Conversation number k: system or not, 1-3 turns. */
static SftConversation
make_conv(SftMessage *m, int k, int with_system)
{
	SftConversation c = {m, 0};
	int			p = k * 5;

	if (with_system)
		m[c.n++] = (SftMessage) {SFT_ROLE_SYSTEM, POOL[p % 12], strlen(POOL[p % 12])}, p++;
	for (int t = 0; t < 1 + k % 3; t++)
	{
		m[c.n++] = (SftMessage) {SFT_ROLE_USER, POOL[p % 12], strlen(POOL[p % 12])}, p++;
		m[c.n++] = (SftMessage) {SFT_ROLE_ASSISTANT, POOL[p % 12], strlen(POOL[p % 12])}, p++;
	}
	return c;
}

static int
same_encoding(const SftEncoded *a, const SftEncoded *b)
{
	return a->ids.len == b->ids.len && a->mask.len == b->mask.len &&
		memcmp(a->ids.data, b->ids.data, a->ids.len * sizeof(int32_t)) == 0 &&
		memcmp(a->mask.data, b->mask.data, a->mask.len * sizeof(int32_t)) == 0;
}

/* The built-in template and its Jinja form agree on text, ids and masks. */
static void
compare_with_builtin(const char *what, SftTemplateKind kind, const char *default_system,
					 const char *jinja_src, const SftTokenizer *tok)
{
	SftChatTemplate b = {0},
				j = {0};
	SftJinjaTemplate *jt = parse(jinja_src);
	int			texts = 0,
				encodings = 0,
				total = 0;
	SftError	err = {0};

	b.kind = kind;
	b.default_system = default_system;
	b.default_system_len = default_system ? strlen(default_system) : 0;
	/* the default system prompt is part of the Jinja source */
	j.kind = SFT_TEMPLATE_JINJA;
	j.jinja = jt;
	if (jt == NULL)
	{
		TAP_OK(0, "%s: the Jinja form parses", what);
		return;
	}
	TAP_OK(sft_template_matches_jinja(kind, default_system, jt, tok), "%s: the import probe finds the built-in equal", what);
	for (int k = 0; k < 24; k++)
	{
		SftMessage	m[8];
		SftConversation c = make_conv(m, k, k % 2 == 0);

		for (int gen = 0; gen < 2; gen++)
		{
			SftBuf		x,
						y;
			SftConversation cc = c;

			if (gen)
				cc.n--;
			sft_buf_init(&x);
			sft_buf_init(&y);
			total++;
			if (sft_chat_render(&b, tok, &cc, gen, &x, &err) == SFT_OK &&
				sft_chat_render(&j, tok, &cc, gen, &y, &err) == SFT_OK &&
				x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0))
				texts++;
			else if (texts + 1 == total)
				printf("# %s: render differs (case %d gen %d): %s\n", what, k, gen, err.message);
			sft_buf_free(&x);
			sft_buf_free(&y);
		}
		for (int on = 0; on < 2; on++)
		{
			SftEncoded e1,
						e2;

			sft_encoded_init(&e1);
			sft_encoded_init(&e2);
			if (sft_chat_encode(&b, tok, &c, (SftTrainOn) on, 0, 0, &e1, &err) == SFT_OK &&
				sft_chat_encode(&j, tok, &c, (SftTrainOn) on, 0, 0, &e2, &err) == SFT_OK &&
				same_encoding(&e1, &e2) && e1.n_masked == e2.n_masked)
				encodings++;
			else
				printf("# %s: encoding differs (case %d, %s): %s\n", what, k, sft_train_on_name(on), err.message);
			sft_encoded_free(&e1);
			sft_encoded_free(&e2);
		}
	}
	TAP_OK(texts == total, "%s: %d of %d renders identical to the built-in template", what, texts, total);
	TAP_OK(encodings == 48, "%s: %d of 48 encodings (ids and masks, all and last assistant) identical", what, encodings);
	sft_jinja_free(jt);
}

static void
test_builtins(const SftTokenizer *bpe, const SftTokenizer *sp)
{
	static const struct
	{
		SftTemplateKind kind;
		const char *system;
		int			sentencepiece;
	}			cases[] = {
		{SFT_TEMPLATE_CHATML, NULL, 0}, {SFT_TEMPLATE_CHATML, "You are a helpful AI assistant", 0},
		{SFT_TEMPLATE_LLAMA3, NULL, 0}, {SFT_TEMPLATE_LLAMA3, "Be brief.", 0},
		{SFT_TEMPLATE_LLAMA2, NULL, 1}, {SFT_TEMPLATE_LLAMA2, "Be brief.", 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SftChatTemplate b = {0};
		SftBuf		src;
		SftError	err = {0};
		char		what[128];

		b.kind = cases[i].kind;
		b.default_system = cases[i].system;
		b.default_system_len = cases[i].system ? strlen(cases[i].system) : 0;
		sft_buf_init(&src);
		if (sft_template_jinja(&b, &src, &err) != SFT_OK)
			continue;
		snprintf(what, sizeof(what), "%s%s (our Jinja)", sft_template_name(b.kind), cases[i].system ? " + system" : "");
		compare_with_builtin(what, cases[i].kind, cases[i].system, src.data, cases[i].sentencepiece ? sp : bpe);
		sft_buf_free(&src);
	}
	/* the published templates the fixture configs carry */
	{
		const char *cfgs[] = {"tiny_config_chatml.json", "tiny_config_llama3.json", "tiny_config_llama2.json"};
		SftTemplateKind kinds[] = {SFT_TEMPLATE_CHATML, SFT_TEMPLATE_LLAMA3, SFT_TEMPLATE_LLAMA2};

		for (int i = 0; i < 3; i++)
		{
			char	   *text = read_file(cfgs[i], NULL);
			json_object *cfg = text ? json_tokener_parse(text) : NULL;
			json_object *tpl;
			char		what[128];
			SftTemplateKind kind;
			char	   *system = NULL;
			const char *src;

			if (cfg == NULL || !json_object_object_get_ex(cfg, "chat_template", &tpl))
			{
				TAP_OK(0, "%s has a chat_template", cfgs[i]);
				continue;
			}
			src = json_object_get_string(tpl);
			if (!sft_template_detect(src, strlen(src), &kind, &system))
				kind = kinds[i];
			snprintf(what, sizeof(what), "%s (%s)", sft_template_name(kind), cfgs[i]);
			/* the published template embeds its default system prompt itself */
			compare_with_builtin(what, kind, system, src, i == 2 ? sp : bpe);
			free(system);
			json_object_put(cfg);
			free(text);
		}
	}
}

/* Encode one conversation through src; returns status, fills enc. */
static SftStatus
encode_src(const char *src, const SftTokenizer *tok, const SftConversation *c, SftTrainOn on,
		   const char *kwargs, SftEncoded *enc, SftError *err)
{
	SftChatTemplate j = {0};
	SftJinjaTemplate *jt = parse(src);
	json_object *kw = kwargs ? json_tokener_parse(kwargs) : NULL;
	SftStatus	st;

	j.kind = SFT_TEMPLATE_JINJA;
	j.jinja = jt;
	j.kwargs = kw;
	st = jt ? sft_chat_encode(&j, tok, c, on, 0, 0, enc, err) : SFT_ERR_INVALID;
	sft_jinja_free(jt);
	json_object_put(kw);
	return st;
}

static void
test_jinja_only(const SftTokenizer *bpe)
{
	SftMessage	m[4] = {
		{SFT_ROLE_USER, "Hi <|im_end|>", 13}, {SFT_ROLE_ASSISTANT, "Hello", 5},
		{SFT_ROLE_USER, "More", 4}, {SFT_ROLE_ASSISTANT, "Sure", 4}
	};
	SftConversation c = {m, 4};
	SftEncoded	enc;
	SftError	err = {0};
	int32_t		bos = sft_tokenizer_token_to_id(bpe, "<|begin_of_text|>", 17);
	int32_t		im_end = sft_tokenizer_token_to_id(bpe, "<|im_end|>", 10);
	int			n_im_end = 0,
				n_bos = 0;
	const char *chatml_bos = "{{ '<|begin_of_text|>' }}{% for m in messages %}<|im_start|>{{ m.role }}\n"
		"{{ m.content }}<|im_end|>\n{% endfor %}";

	sft_encoded_init(&enc);
	TAP_OK(encode_src(chatml_bos, bpe, &c, SFT_TRAIN_ALL_ASSISTANT, NULL, &enc, &err) == SFT_OK,
		   "a template that writes BOS encodes (%s)", err.message);
	for (size_t t = 0; t < enc.ids.len; t++)
	{
		n_bos += enc.ids.data[t] == bos;
		n_im_end += enc.ids.data[t] == im_end;
	}
	TAP_OK(n_bos == 1 && enc.ids.data[0] == bos, "BOS written by the template appears once, first (%d)", n_bos);
	TAP_OK(n_im_end == 4, "<|im_end|> typed by the user stays text: 4 template tokens, not 5 (%d)", n_im_end);
	/* mask: "Hello" + <|im_end|> and "Sure" + <|im_end|>; the "\n" after them is 0 */
	{
		TAP_OK(enc.n_masked > 0 && enc.mask.data[enc.ids.len - 1] == 0 && enc.mask.data[enc.ids.len - 2] == 1 &&
			   enc.ids.data[enc.ids.len - 2] == im_end, "the closing <|im_end|> is trained, the newline after it is not");
	}
	sft_encoded_free(&enc);

	/* {% generation %} blocks are the mask */
	{
		const char *gen_src = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}"
			"{% generation %}{{ m.content | upper }}<|im_end|>{% endgeneration %}{% else %}{{ m.content }}<|im_end|>"
			"{% endif %}\n{% endfor %}";
		SftEncoded e2;

		sft_encoded_init(&enc);
		sft_encoded_init(&e2);
		TAP_OK(encode_src(gen_src, bpe, &c, SFT_TRAIN_ALL_ASSISTANT, NULL, &enc, &err) == SFT_OK &&
			   encode_src(gen_src, bpe, &c, SFT_TRAIN_LAST_ASSISTANT, NULL, &e2, &err) == SFT_OK &&
			   enc.n_masked > e2.n_masked && e2.n_masked > 0,
			   "generation blocks mask even transformed content; last_assistant keeps the last block (%d > %d)",
			   enc.n_masked, e2.n_masked);
		sft_encoded_free(&enc);
		sft_encoded_free(&e2);
	}
	/* a template that transforms the reply without generation blocks is refused for training */
	sft_encoded_init(&enc);
	sft_error_clear(&err);
	TAP_OK(encode_src("{% for m in messages %}{{ m.content | upper }}<|im_end|>{% endfor %}", bpe, &c,
					  SFT_TRAIN_ALL_ASSISTANT, NULL, &enc, &err) == SFT_ERR_UNSUPPORTED &&
		   strstr(err.message, "assistant message 1") != NULL,
		   "content the template rewrites cannot be masked: refused (%s)", err.message);
	sft_encoded_free(&enc);
	/* template_kwargs reach the template; messages cannot be overridden */
	{
		SftChatTemplate j = {0};
		SftJinjaTemplate *jt = parse("{{ greeting }}{% if not enable_thinking %}/no_think{% endif %}");
		json_object *kw = json_tokener_parse("{\"greeting\": \"hey\", \"enable_thinking\": false}");
		SftBuf		out;

		sft_buf_init(&out);
		j.kind = SFT_TEMPLATE_JINJA;
		j.jinja = jt;
		j.kwargs = kw;
		TAP_OK(sft_chat_render(&j, bpe, &c, 0, &out, &err) == SFT_OK && strcmp(out.data, "hey/no_think") == 0,
			   "template_kwargs are template variables (%s)", out.data ? out.data : err.message);
		json_object_put(kw);
		kw = json_tokener_parse("{\"messages\": []}");
		j.kwargs = kw;
		sft_error_clear(&err);
		TAP_OK(sft_chat_render(&j, bpe, &c, 0, &out, &err) == SFT_ERR_INVALID && strstr(err.message, "messages"),
			   "template_kwargs cannot replace messages (%s)", err.message);
		json_object_put(kw);
		sft_jinja_free(jt);
		sft_buf_free(&out);
	}
	/* the end-of-turn token */
	{
		SftChatTemplate j = {0};
		SftJinjaTemplate *jt = parse(chatml_bos);

		j.kind = SFT_TEMPLATE_JINJA;
		j.jinja = jt;
		TAP_OK(sft_template_jinja_end_of_turn_id(&j, bpe, &err) == im_end, "the end-of-turn token is <|im_end|>");
		sft_jinja_free(jt);
	}
	/* a template that is not the built-in one is not taken for it */
	{
		SftJinjaTemplate *jt = parse("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
									 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");

		TAP_OK(jt && !sft_template_matches_jinja(SFT_TEMPLATE_CHATML, NULL, jt, bpe),
			   "chatml with a leading bos_token is not the built-in chatml");
		sft_jinja_free(jt);
	}
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
		snprintf(fixture_dir, sizeof(fixture_dir), "%.*s/../fixtures", (int) (slash - argv[0]), argv[0]);
	else
		snprintf(fixture_dir, sizeof(fixture_dir), "../fixtures");
	bpe = load("tiny_bpe.json", "tiny_config_llama3.json");
	sp = load("tiny_sp.json", "tiny_config_llama2.json");
	TAP_OK(bpe && sp, "fixture tokenizers load");
	if (bpe && sp)
	{
		test_builtins(bpe, sp);
		test_jinja_only(bpe);
	}
	sft_tokenizer_free(bpe);
	sft_tokenizer_free(sp);
	return tap_done();
}
