/*
 * jinja_render.c: the engine's side of test/suites/jinja_parity.sh.
 *
 *   jinja_render <templates.json> <cases.jsonl>
 * templates.json maps a name to Jinja source; each line of cases.jsonl is
 * {"template": name, "vars": {...}}.  Prints one JSON line per case:
 * {"text": rendered} or {"error": message}.  The clock of strftime_now is
 * pinned to SFT_JINJA_NOW (seconds since the epoch) when set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "jinja.h"

static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n + 1);
	if (buf == NULL || fread(buf, 1, n, f) != (size_t) n)
	{
		fclose(f);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	fclose(f);
	*len = n;
	return buf;
}

int
main(int argc, char **argv)
{
	size_t		len;
	char	   *text;
	json_object *templates;
	FILE	   *cases;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;
	const char *now = getenv("SFT_JINJA_NOW");

	if (argc != 3)
	{
		fprintf(stderr, "usage: jinja_render templates.json cases.jsonl\n");
		return 2;
	}
	text = read_file(argv[1], &len);
	templates = text ? json_tokener_parse(text) : NULL;
	free(text);
	cases = fopen(argv[2], "r");
	if (templates == NULL || cases == NULL)
	{
		fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
		return 2;
	}
	while ((n = getline(&line, &cap, cases)) > 0)
	{
		json_object *c = json_tokener_parse(line);
		json_object *name,
				   *src,
				   *vars;
		json_object *res = json_object_new_object();
		SftJinjaTemplate *tpl = NULL;
		SftError	err = {0};
		SftBuf		out;

		sft_buf_init(&out);
		if (c == NULL || !json_object_object_get_ex(c, "template", &name) ||
			!json_object_object_get_ex(templates, json_object_get_string(name), &src) ||
			!json_object_object_get_ex(c, "vars", &vars))
		{
			fprintf(stderr, "bad case line: %s", line);
			return 2;
		}
		if (sft_jinja_parse(json_object_get_string(src), json_object_get_string_len(src), &tpl, &err) == SFT_OK)
		{
			SftJinjaRender r;
			SftJinjaSpans content = {0},
						generation = {0};

			sft_jinja_render_init(&r, vars);
			r.content_spans = &content;
			r.generation_spans = &generation;
			if (now)
			{
				r.now_set = 1;
				r.now = (time_t) atoll(now);
			}
			if (sft_jinja_render(tpl, &r, &out, &err) == SFT_OK)
			{
				json_object *gen = json_object_new_array();
				json_object *cont = json_object_new_array();

				json_object_object_add(res, "text", json_object_new_string_len(out.data ? out.data : "", out.len));
				/* spans as [start, end) byte offsets, content spans with their message index */
				for (size_t i = 0; i < generation.len; i++)
				{
					json_object *s = json_object_new_array();

					json_object_array_add(s, json_object_new_int64(generation.data[i].start));
					json_object_array_add(s, json_object_new_int64(generation.data[i].start + generation.data[i].len));
					json_object_array_add(gen, s);
				}
				for (size_t i = 0; i < content.len; i++)
				{
					json_object *s = json_object_new_array();

					json_object_array_add(s, json_object_new_int64(content.data[i].start));
					json_object_array_add(s, json_object_new_int64(content.data[i].start + content.data[i].len));
					json_object_array_add(s, json_object_new_int(content.data[i].message));
					json_object_array_add(cont, s);
				}
				json_object_object_add(res, "generation", gen);
				json_object_object_add(res, "content", cont);
			}
			else
			{
				json_object_object_add(res, "error", json_object_new_string(err.message));
				json_object_object_add(res, "raised", json_object_new_boolean(r.raised));
			}
			sft_jinja_spans_free(&content);
			sft_jinja_spans_free(&generation);
		}
		else
			json_object_object_add(res, "error", json_object_new_string(err.message));
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		sft_jinja_free(tpl);
		sft_buf_free(&out);
		json_object_put(res);
		json_object_put(c);
	}
	free(line);
	fclose(cases);
	json_object_put(templates);
	return 0;
}
