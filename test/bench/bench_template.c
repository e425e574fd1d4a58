/*
 * bench_template.c: chat-template rendering in the core, one core: the
 * Jinja engine against the hand-written built-in walk, per conversation.
 *
 *   bench_template --hf tokenizer.json [--config tokenizer_config.json]
 *                  --template chat.jinja|- [--builtin chatml] --input conversations.jsonl
 *                  [--repeats N] [--out rendered.jsonl]
 *
 * Conversations are parsed once up front (what the glue hands the core);
 * each pass renders every conversation once through the engine
 * (sft_chat_render), and, with --builtin, through the built-in walk, then
 * counts tokens both ways (sft_chat_token_count: render + tokenize); --template -
 * renders the built-in's own Jinja form (sft_template_jinja).  Prints
 * medians of N passes in CPU microseconds per conversation:
 *   render_jinja_us=.. render_builtin_us=.. count_jinja_us=.. count_builtin_us=..
 * --out writes the engine's renderings (one JSON string a line) so the
 * driver can check them against Python's before trusting the timing.
 */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "chat_template.h"

/* This thread's CPU seconds: what a shared, busy machine disturbs least. */
static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *data;
	long		size;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc((size_t) size + 1);
	if (data && fread(data, 1, (size_t) size, f) != (size_t) size)
	{
		free(data);
		data = NULL;
	}
	fclose(f);
	if (data)
		data[size] = '\0';
	*len = (size_t) size;
	return data;
}

/* One line of the input: [{"role": ..., "content": ...}, ...] (json-c keeps the strings). */
static int
parse_conversation(json_object *arr, SftConversation *conv)
{
	size_t		n = json_object_array_length(arr);

	conv->messages = calloc(n ? n : 1, sizeof(SftMessage));
	conv->n = (int) n;
	for (size_t i = 0; i < n; i++)
	{
		json_object *m = json_object_array_get_idx(arr, i);
		json_object *role,
				   *content;
		int			r;

		if (!json_object_object_get_ex(m, "role", &role) ||
			!json_object_object_get_ex(m, "content", &content))
			return -1;
		r = sft_role_parse(json_object_get_string(role), json_object_get_string_len(role));
		if (r < 0)
			return -1;
		conv->messages[i].role = (SftRole) r;
		conv->messages[i].content = json_object_get_string(content);
		conv->messages[i].len = (size_t) json_object_get_string_len(content);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *hf = NULL,
			   *config = NULL,
			   *template = NULL,
			   *builtin = NULL,
			   *input = NULL,
			   *out_path = NULL;
	int			repeats = 5;
	int			render_only = 0;	/* --render-only 1: the engine's render alone (for a profiler) */
	SftError	err = {0};
	SftTokenizer *tok = NULL;
	SftJinjaTemplate *jinja = NULL;
	SftChatTemplate tj = {0},
				tb = {0};
	char	   *tok_json,
			   *cfg_json = NULL,
			   *src,
			   *lines;
	size_t		tok_len,
				cfg_len = 0,
				src_len,
				lines_len;
	SftConversation *convs = NULL;
	json_object **keep = NULL;
	int			n = 0,
				cap = 0;
	double	   *t_rj,
			   *t_rb,
			   *t_cj,
			   *t_cb;
	SftBuf		buf;

	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--hf") == 0)
			hf = argv[i + 1];
		else if (strcmp(argv[i], "--config") == 0)
			config = argv[i + 1];
		else if (strcmp(argv[i], "--template") == 0)
			template = argv[i + 1];
		else if (strcmp(argv[i], "--builtin") == 0)
			builtin = argv[i + 1];
		else if (strcmp(argv[i], "--input") == 0)
			input = argv[i + 1];
		else if (strcmp(argv[i], "--repeats") == 0)
			repeats = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--out") == 0)
			out_path = argv[i + 1];
		else if (strcmp(argv[i], "--render-only") == 0)
			render_only = atoi(argv[i + 1]);
	}
	if (hf == NULL || template == NULL || input == NULL || repeats < 1)
	{
		fprintf(stderr, "usage: bench_template --hf tokenizer.json [--config tokenizer_config.json] "
				"--template chat.jinja [--builtin NAME] --input conversations.jsonl [--repeats N] [--out FILE]\n");
		return 2;
	}
	tok_json = read_file(hf, &tok_len);
	if (config)
		cfg_json = read_file(config, &cfg_len);
	src = strcmp(template, "-") == 0 ? NULL : read_file(template, &src_len);
	lines = read_file(input, &lines_len);
	if (builtin && sft_template_from_name(builtin, &tb.kind, &err) != SFT_OK)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	if (src == NULL && builtin && strcmp(template, "-") == 0)
	{
		/* --template -: the built-in's own Jinja form */
		SftBuf		j;

		sft_buf_init(&j);
		if (sft_template_jinja(&tb, &j, &err) != SFT_OK)
		{
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
		src = j.data;
		src_len = j.len;
	}
	if (tok_json == NULL || src == NULL || lines == NULL || (config && cfg_json == NULL))
	{
		fprintf(stderr, "cannot read the inputs\n");
		return 1;
	}
	if (sft_tokenizer_from_hf(tok_json, tok_len, cfg_json, cfg_len, &tok, &err) != SFT_OK ||
		sft_jinja_parse(src, src_len, &jinja, &err) != SFT_OK)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	tj.kind = SFT_TEMPLATE_JINJA;
	tj.jinja = jinja;
	for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n"))
	{
		json_object *arr = json_tokener_parse(line);

		if (n == cap)
		{
			cap = cap ? cap * 2 : 1024;
			convs = realloc(convs, sizeof(SftConversation) * cap);
			keep = realloc(keep, sizeof(json_object *) * cap);
		}
		if (arr == NULL || !json_object_is_type(arr, json_type_array) ||
			parse_conversation(arr, &convs[n]) != 0)
		{
			fprintf(stderr, "line %d is not a conversation\n", n + 1);
			return 1;
		}
		keep[n++] = arr;
	}
	sft_buf_init(&buf);
	if (out_path)
	{
		FILE	   *f = fopen(out_path, "w");

		for (int i = 0; i < n && f; i++)
		{
			json_object *s;

			if (sft_chat_render(&tj, tok, &convs[i], 0, &buf, &err) != SFT_OK)
			{
				fprintf(stderr, "conversation %d: %s\n", i + 1, err.message);
				return 1;
			}
			s = json_object_new_string_len(buf.data ? buf.data : "", (int) buf.len);
			fprintf(f, "%s\n", json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
			json_object_put(s);
		}
		if (f)
			fclose(f);
	}
	t_rj = calloc(repeats, sizeof(double));
	t_rb = calloc(repeats, sizeof(double));
	t_cj = calloc(repeats, sizeof(double));
	t_cb = calloc(repeats, sizeof(double));
	for (int r = 0; r <= repeats; r++)
	{
		double		t0;
		int64_t		count_j = 0,
					count_b = 0;

		/* pass 0 warms up */
		t0 = cpu_now();
		for (int i = 0; i < n; i++)
			if (sft_chat_render(&tj, tok, &convs[i], 0, &buf, &err) != SFT_OK)
				goto fail;
		if (r > 0)
			t_rj[r - 1] = (cpu_now() - t0) / n * 1e6;
		if (render_only)
			continue;
		if (builtin)
		{
			t0 = cpu_now();
			for (int i = 0; i < n; i++)
				if (sft_chat_render(&tb, tok, &convs[i], 0, &buf, &err) != SFT_OK)
					goto fail;
			if (r > 0)
				t_rb[r - 1] = (cpu_now() - t0) / n * 1e6;
		}
		t0 = cpu_now();
		for (int i = 0; i < n; i++)
		{
			int64_t		c;

			if (sft_chat_token_count(&tj, tok, &convs[i], 0, &c, &err) != SFT_OK)
				goto fail;
			count_j += c;
		}
		if (r > 0)
			t_cj[r - 1] = (cpu_now() - t0) / n * 1e6;
		if (builtin)
		{
			t0 = cpu_now();
			for (int i = 0; i < n; i++)
			{
				int64_t		c;

				if (sft_chat_token_count(&tb, tok, &convs[i], 0, &c, &err) != SFT_OK)
					goto fail;
				count_b += c;
			}
			if (r > 0)
				t_cb[r - 1] = (cpu_now() - t0) / n * 1e6;
			/* validate before timing means anything */
			if (count_b != count_j)
			{
				fprintf(stderr, "token counts differ: engine %lld, built-in %lld\n",
						(long long) count_j, (long long) count_b);
				return 1;
			}
		}
	}
	printf("conversations=%d render_jinja_us=%.3f count_jinja_us=%.3f", n,
		   median(t_rj, repeats), median(t_cj, repeats));
	if (builtin)
		printf(" render_builtin_us=%.3f count_builtin_us=%.3f",
			   median(t_rb, repeats), median(t_cb, repeats));
	printf("\n");
	for (int i = 0; i < n; i++)
	{
		free(convs[i].messages);
		json_object_put(keep[i]);
	}
	free(convs);
	free(keep);
	sft_buf_free(&buf);
	sft_jinja_free(jinja);
	sft_tokenizer_free(tok);
	return 0;
fail:
	fprintf(stderr, "%s\n", err.message);
	return 1;
}
