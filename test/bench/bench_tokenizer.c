/*
 * bench_tokenizer.c: encoding throughput of the core tokenizer, one core.
 *
 *   bench_tokenizer (--hf tokenizer.json | --vocab vocab.json --merges merges.txt)
 *                   --input strings.jsonl [--repeats N] [--ids out.jsonl]
 *
 * Encodes every string of the input (one JSON string per line, one encode
 * call each, plain-text mode) once to warm up, then N times timed; prints
 *   tokens=T bytes=B median_s=S mbps=M
 * with M = B / S / 1e6 from the median pass (wall clock), and cpu_s / cpu_mbps
 * from this thread's CPU time, which a busy shared machine disturbs less.
 * --ids writes the ids of the
 * warm-up pass, so the driver can check them against the reference before
 * trusting the timing.
 */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	if (data)
		data[size] = '\0';
	*len = (size_t) size;
	return data;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	const char *hf = NULL,
			   *vocab = NULL,
			   *merges = NULL,
			   *input = NULL,
			   *ids_out = NULL;
	int			repeats = 7;
	SftTokenizer *tok = NULL;
	SftError	err = {0};
	char	  **texts = NULL;		/* [n] */
	size_t	   *lens = NULL;		/* [n] */
	size_t		n = 0,
				cap = 0,
				bytes = 0,
				tokens = 0;
	double	   *times;
	double	   *cpu_times;
	FILE	   *f;
	char	   *line = NULL;
	size_t		lcap = 0;
	SftIntVec	ids;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--hf") == 0 && i + 1 < argc)
			hf = argv[++i];
		else if (strcmp(argv[i], "--vocab") == 0 && i + 1 < argc)
			vocab = argv[++i];
		else if (strcmp(argv[i], "--merges") == 0 && i + 1 < argc)
			merges = argv[++i];
		else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc)
			input = argv[++i];
		else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
			repeats = atoi(argv[++i]);
		else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc)
			ids_out = argv[++i];
		else
		{
			fprintf(stderr, "usage: %s (--hf tokenizer.json | --vocab v.json --merges m.txt) --input strings.jsonl [--repeats N] [--ids out]\n", argv[0]);
			return 2;
		}
	}
	if (input == NULL || (hf == NULL && (vocab == NULL || merges == NULL)) || repeats < 1)
	{
		fprintf(stderr, "need --input and a tokenizer\n");
		return 2;
	}
	if (hf)
	{
		size_t		len;
		char	   *t = read_file(hf, &len);

		if (t == NULL || sft_tokenizer_from_hf(t, len, NULL, 0, &tok, &err) != SFT_OK)
		{
			fprintf(stderr, "cannot load %s: %s\n", hf, err.message);
			return 1;
		}
		free(t);
	}
	else
	{
		size_t		vlen,
					mlen;
		char	   *v = read_file(vocab, &vlen);
		char	   *m = read_file(merges, &mlen);

		if (v == NULL || m == NULL || sft_tokenizer_from_vocab_merges(v, vlen, m, mlen, &tok, &err) != SFT_OK)
		{
			fprintf(stderr, "cannot load %s: %s\n", vocab, err.message);
			return 1;
		}
		free(v);
		free(m);
	}
	f = fopen(input, "r");
	if (f == NULL)
	{
		perror(input);
		return 1;
	}
	while (getline(&line, &lcap, f) > 0)
	{
		json_object *o = json_tokener_parse(line);

		if (o == NULL || !json_object_is_type(o, json_type_string))
		{
			fprintf(stderr, "input line %zu is not a JSON string\n", n + 1);
			return 1;
		}
		if (n == cap)
		{
			cap = cap ? cap * 2 : 1024;
			texts = realloc(texts, cap * sizeof(char *));
			lens = realloc(lens, cap * sizeof(size_t));
		}
		lens[n] = (size_t) json_object_get_string_len(o);
		texts[n] = malloc(lens[n] + 1);
		memcpy(texts[n], json_object_get_string(o), lens[n] + 1);
		bytes += lens[n];
		n++;
		json_object_put(o);
	}
	fclose(f);
	free(line);

	/* warm-up pass: validates (every string encodes) and counts tokens */
	sft_intvec_init(&ids);
	f = ids_out ? fopen(ids_out, "w") : NULL;
	for (size_t i = 0; i < n; i++)
	{
		ids.len = 0;
		if (sft_tokenizer_encode(tok, texts[i], lens[i], 0, &ids, NULL, &err) != SFT_OK)
		{
			fprintf(stderr, "string %zu: %s\n", i + 1, err.message);
			return 1;
		}
		tokens += ids.len;
		if (f)
		{
			fputs("{\"ids\":[", f);
			for (size_t k = 0; k < ids.len; k++)
				fprintf(f, k ? ",%d" : "%d", ids.data[k]);
			fputs("]}\n", f);
		}
	}
	if (f)
		fclose(f);
	times = malloc((size_t) repeats * sizeof(double));
	cpu_times = malloc((size_t) repeats * sizeof(double));
	for (int r = 0; r < repeats; r++)
	{
		double		t0 = now();
		double		c0 = cpu_now();

		for (size_t i = 0; i < n; i++)
		{
			ids.len = 0;
			sft_tokenizer_encode(tok, texts[i], lens[i], 0, &ids, NULL, &err);
		}
		times[r] = now() - t0;
		cpu_times[r] = cpu_now() - c0;
	}
	qsort(times, (size_t) repeats, sizeof(double), cmp_double);
	qsort(cpu_times, (size_t) repeats, sizeof(double), cmp_double);
	printf("tokens=%zu bytes=%zu median_s=%.6f mbps=%.3f cpu_s=%.6f cpu_mbps=%.3f\n", tokens, bytes,
		   times[repeats / 2], (double) bytes / times[repeats / 2] / 1e6,
		   cpu_times[repeats / 2], (double) bytes / cpu_times[repeats / 2] / 1e6);
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(texts);
	free(lens);
	free(times);
	free(cpu_times);
	sft_intvec_free(&ids);
	sft_tokenizer_free(tok);
	return 0;
}
