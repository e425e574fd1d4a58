/*
 * tokenize_cli.c: a standalone driver over the core tokenizer, for the
 * parity suite (test/suites/tokenizer_parity.sh) and for poking at files.
 *
 *   tokenize_cli (--hf tokenizer.json [--config tokenizer_config.json]
 *                 | --vocab vocab.json --merges merges.txt)
 *                [--split-special] [--offsets] [--decode] < corpus.jsonl
 *
 * --decode: input lines are {"ids":[...]}; prints {"text":"..."} (the ids
 * decoded, special tokens kept) or {"error":"..."} per line.
 * Otherwise reads one JSON string per input line and prints one JSON object
 * per line:
 *   {"ids":[...], "rt":1, "text":"...", "offsets":[...]}
 * where text is decode(encode(input)) and rt says whether it equals the
 * input; or {"error":"..."}.
 */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

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
	*len = (size_t) size;
	return data;
}

int
main(int argc, char **argv)
{
	const char *hf = NULL,
			   *config = NULL,
			   *vocab = NULL,
			   *merges = NULL;
	int			split_special = 0;
	int			want_offsets = 0;
	int			decode_only = 0;
	SftTokenizer *tok = NULL;
	SftError	err = {0};
	SftStatus	st;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--hf") == 0 && i + 1 < argc)
			hf = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--vocab") == 0 && i + 1 < argc)
			vocab = argv[++i];
		else if (strcmp(argv[i], "--merges") == 0 && i + 1 < argc)
			merges = argv[++i];
		else if (strcmp(argv[i], "--split-special") == 0)
			split_special = 1;
		else if (strcmp(argv[i], "--offsets") == 0)
			want_offsets = 1;
		else if (strcmp(argv[i], "--decode") == 0)
			decode_only = 1;
		else
		{
			fprintf(stderr, "usage: %s (--hf tokenizer.json [--config cfg.json] | --vocab v.json --merges m.txt) [--split-special] [--offsets] < corpus.jsonl\n", argv[0]);
			return 2;
		}
	}
	if (hf)
	{
		size_t		tlen = 0,
					clen = 0;
		char	   *t = read_file(hf, &tlen);
		char	   *c = config ? read_file(config, &clen) : NULL;

		if (t == NULL || (config && c == NULL))
		{
			fprintf(stderr, "cannot read %s\n", t == NULL ? hf : config);
			return 2;
		}
		st = sft_tokenizer_from_hf(t, tlen, c, clen, &tok, &err);
		free(t);
		free(c);
	}
	else if (vocab && merges)
	{
		size_t		vlen = 0,
					mlen = 0;
		char	   *v = read_file(vocab, &vlen);
		char	   *m = read_file(merges, &mlen);

		if (v == NULL || m == NULL)
		{
			fprintf(stderr, "cannot read %s\n", v == NULL ? vocab : merges);
			return 2;
		}
		st = sft_tokenizer_from_vocab_merges(v, vlen, m, mlen, &tok, &err);
		free(v);
		free(m);
	}
	else
	{
		fprintf(stderr, "need --hf or --vocab and --merges\n");
		return 2;
	}
	if (st != SFT_OK)
	{
		fprintf(stderr, "load failed: %s\n", err.message);
		return 1;
	}

	while ((n = getline(&line, &cap, stdin)) > 0)
	{
		json_object *obj = json_tokener_parse(line);
		SftIntVec	ids,
					offsets;
		SftBuf		text;

		sft_intvec_init(&ids);
		sft_intvec_init(&offsets);
		sft_buf_init(&text);
		if (decode_only)
		{
			json_object *arr = NULL;
			json_object *out;

			if (obj == NULL || !json_object_object_get_ex(obj, "ids", &arr) || !json_object_is_type(arr, json_type_array))
				printf("{\"error\":\"input line has no ids array\"}\n");
			else
			{
				for (size_t i = 0; i < json_object_array_length(arr); i++)
					sft_intvec_push(&ids, json_object_get_int(json_object_array_get_idx(arr, i)));
				sft_error_clear(&err);
				if (sft_tokenizer_decode(tok, ids.data, ids.len, 0, &text, &err) == SFT_OK)
				{
					out = json_object_new_string_len(text.data ? text.data : "", (int) text.len);
					printf("{\"text\":%s}\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
				}
				else
				{
					out = json_object_new_string(err.message);
					printf("{\"error\":%s}\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
				}
				json_object_put(out);
			}
			if (obj)
				json_object_put(obj);
			sft_intvec_free(&ids);
			sft_buf_free(&text);
			continue;
		}
		if (obj == NULL || !json_object_is_type(obj, json_type_string))
		{
			printf("{\"error\":\"input line is not a JSON string\"}\n");
			if (obj)
				json_object_put(obj);
			continue;
		}
		sft_error_clear(&err);
		st = sft_tokenizer_encode(tok, json_object_get_string(obj), (size_t) json_object_get_string_len(obj),
								  split_special, &ids, want_offsets ? &offsets : NULL, &err);
		if (st == SFT_OK)
			st = sft_tokenizer_decode(tok, ids.data, ids.len, 0, &text, &err);
		if (st != SFT_OK)
		{
			json_object *msg = json_object_new_string(err.message);

			printf("{\"error\":%s}\n", json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN));
			json_object_put(msg);
		}
		else
		{
			json_object *decoded;
			int			rt = text.len == (size_t) json_object_get_string_len(obj) &&
				memcmp(text.data ? text.data : "", json_object_get_string(obj), text.len) == 0;

			printf("{\"ids\":[");
			for (size_t i = 0; i < ids.len; i++)
				printf(i ? ",%d" : "%d", ids.data[i]);
			decoded = json_object_new_string_len(text.data ? text.data : "", (int) text.len);
			printf("],\"rt\":%d,\"text\":%s", rt, json_object_to_json_string_ext(decoded, JSON_C_TO_STRING_PLAIN));
			json_object_put(decoded);
			if (want_offsets)
			{
				printf(",\"offsets\":[");
				for (size_t i = 0; i < offsets.len; i++)
					printf(i ? ",%d" : "%d", offsets.data[i]);
				printf("]");
			}
			printf("}\n");
		}
		json_object_put(obj);
		sft_intvec_free(&ids);
		sft_intvec_free(&offsets);
		sft_buf_free(&text);
	}
	free(line);
	sft_tokenizer_free(tok);
	return 0;
}
