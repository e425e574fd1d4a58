/*
 * weights.c: Hugging Face model directories.
 *
 * Loading.  config.json, then the weights, as transformers looks for them:
 * model.safetensors when present, else model.safetensors.index.json with its
 * shards.  The index's weight_map must agree with the shards exactly: every
 * tensor of a shard is mapped to that shard, every mapped tensor is found,
 * shard names are plain file names in the directory (no '/', no "..").  The
 * tensor rules (shapes from config.json, dtypes, ignored buffers) are those of
 * sft_st_load_tensors.  Files are read with pread at validated offsets: a
 * file that shrinks while we read is an error, not a crash (mmap would turn
 * it into SIGBUS).
 *
 * PEFT adapter directories (adapter_config.json, adapter_model.safetensors)
 * are read and written here too, with the same file code.
 *
 * Saving.  model.safetensors (fp32, slab order) and config.json, each written
 * to a temporary name, synced and renamed, so a crash never leaves a half-
 * written file under the final name.
 */
#include "lora_adapter.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES ((uint64_t) 16 << 20)
#define INDEX_MAX_BYTES ((uint64_t) 64 << 20)

/* ---------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------- */

typedef struct FileSource
{
	int			fd;
	uint64_t	size;
} FileSource;

static SftStatus
join_path(char *dst, const char *dir, const char *name, SftError *err)
{
	int			n = snprintf(dst, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX)
		return sft_error(err, SFT_ERR_LIMIT, "path %s/%s is too long", dir, name);
	return SFT_OK;
}

static SftStatus
file_open(FileSource *f, const char *path, SftError *err)
{
	struct stat sb;

	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return sft_error(err, SFT_ERR_IO, "could not open %s: %s", path, strerror(errno));
	if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
	{
		int			saved = errno;

		close(f->fd);
		f->fd = -1;
		return sft_error(err, SFT_ERR_IO, "%s is not a regular file%s%s", path,
						 saved ? ": " : "", saved ? strerror(saved) : "");
	}
	f->size = (uint64_t) sb.st_size;
	return SFT_OK;
}

static SftStatus
file_read_at(void *ctx, uint64_t offset, void *dst, size_t len, SftError *err)
{
	FileSource *f = ctx;
	char	   *p = dst;

	while (len > 0)
	{
		ssize_t		n = pread(f->fd, p, len, (off_t) offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sft_error(err, SFT_ERR_IO, "read error at byte %llu: %s",
							 (unsigned long long) offset, strerror(errno));
		if (n == 0)
			return sft_error(err, SFT_ERR_IO,
							 "the file ended at byte %llu while reading (changed while loading?)",
							 (unsigned long long) offset);
		p += n;
		offset += (uint64_t) n;
		len -= (size_t) n;
	}
	return SFT_OK;
}

/* A whole small file (config.json, the index) as NUL-terminated text. */
static SftStatus
read_small_file(const char *path, uint64_t max_bytes, SftBuf *out, SftError *err)
{
	FileSource	f;
	SftStatus	st;

	sft_buf_init(out);
	if ((st = file_open(&f, path, err)) != SFT_OK)
		return st;
	if (f.size > max_bytes)
	{
		close(f.fd);
		return sft_error(err, SFT_ERR_LIMIT, "%s: %llu bytes is more than the limit of %llu",
						 path, (unsigned long long) f.size, (unsigned long long) max_bytes);
	}
	if (sft_buf_reserve(out, (size_t) f.size) != SFT_OK)
	{
		close(f.fd);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory reading %s", path);
	}
	st = file_read_at(&f, 0, out->data, (size_t) f.size, err);
	close(f.fd);
	if (st != SFT_OK)
	{
		sft_error_prefix(err, "%s: ", path);
		sft_buf_free(out);
		return st;
	}
	out->len = (size_t) f.size;
	out->data[out->len] = '\0';
	return SFT_OK;
}

static int
file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* Load one safetensors file; with weight_map, every tensor must be mapped to it. */
static SftStatus
load_file(const char *dir, const char *name, json_object *weight_map, SftModel *model,
		  uint8_t *seen, int *n_found, SftError *err)
{
	char		path[PATH_MAX];
	FileSource	f;
	SftStHeader header;
	SftStatus	st;

	if ((st = join_path(path, dir, name, err)) != SFT_OK)
		return st;
	if ((st = file_open(&f, path, err)) != SFT_OK)
		return st;
	st = sft_st_read_header(file_read_at, &f, f.size, &header, err);
	if (st == SFT_OK)
	{
		for (int i = 0; i < header.n_tensors && weight_map != NULL && st == SFT_OK; i++)
		{
			json_object *mapped = NULL;

			if (!json_object_object_get_ex(weight_map, header.tensors[i].name, &mapped) ||
				!json_object_is_type(mapped, json_type_string) ||
				strcmp(json_object_get_string(mapped), name) != 0)
				st = sft_error(err, SFT_ERR_INVALID,
							   "tensor \"%.100s\" is in this shard but the index's weight_map %s",
							   header.tensors[i].name,
							   mapped ? "maps it to another shard" : "does not list it");
		}
		if (st == SFT_OK)
			st = sft_st_load_tensors(&header, file_read_at, &f, model, seen, err);
		*n_found += header.n_tensors;
		sft_st_header_free(&header);
	}
	close(f.fd);
	if (st != SFT_OK)
		sft_error_prefix(err, "%s: ", name);
	return st;
}

/* A shard name from the index: a plain file name inside the directory. */
static SftStatus
check_shard_name(json_object *value, const char *tensor, SftError *err)
{
	const char *s;
	size_t		len;

	if (!json_object_is_type(value, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT,
						 "weight_map entry for \"%.100s\" must be a file name string", tensor);
	s = json_object_get_string(value);
	len = (size_t) json_object_get_string_len(value);
	if (len == 0 || strlen(s) != len || strchr(s, '/') != NULL || strchr(s, '\\') != NULL ||
		strstr(s, "..") != NULL || len > 255)
		return sft_error(err, SFT_ERR_INVALID,
						 "weight_map entry for \"%.100s\" is not a plain file name in the model directory",
						 tensor);
	return SFT_OK;
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static SftStatus
load_sharded(const char *dir, SftModel *model, uint8_t *seen, SftError *err)
{
	char		path[PATH_MAX];
	SftBuf		text;
	json_tokener *tok;
	json_object *root = NULL;
	json_object *weight_map = NULL;
	const char **shards = NULL;
	int			n_entries;
	int			n_shards = 0;
	int			n_found = 0;
	SftStatus	st;

	if ((st = join_path(path, dir, "model.safetensors.index.json", err)) != SFT_OK ||
		(st = read_small_file(path, INDEX_MAX_BYTES, &text, err)) != SFT_OK)
		return st;
	if (memchr(text.data, '\0', text.len) != NULL ||
		sft_utf8_invalid_offset(text.data, text.len) != (size_t) -1)
	{
		sft_buf_free(&text);
		return sft_error(err, SFT_ERR_FORMAT,
						 "model.safetensors.index.json: not valid UTF-8 text");
	}
	tok = json_tokener_new();
	if (tok == NULL)
	{
		sft_buf_free(&text);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	root = json_tokener_parse_ex(tok, text.data, (int) text.len);
	if (json_tokener_get_error(tok) != json_tokener_success || root == NULL ||
		!json_object_is_type(root, json_type_object) ||
		!json_object_object_get_ex(root, "weight_map", &weight_map) ||
		!json_object_is_type(weight_map, json_type_object))
		st = sft_error(err, SFT_ERR_FORMAT,
					   "model.safetensors.index.json: not a JSON object with a \"weight_map\" object");
	json_tokener_free(tok);
	sft_buf_free(&text);

	/* Distinct shard names, sorted: load order does not depend on JSON order. */
	n_entries = st == SFT_OK ? json_object_object_length(weight_map) : 0;
	if (st == SFT_OK)
	{
		shards = sft_alloc(sizeof(char *) * (size_t) (n_entries ? n_entries : 1));
		if (shards == NULL)
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	if (st == SFT_OK)
	{
		json_object_object_foreach(weight_map, tensor, value)
		{
			if ((st = check_shard_name(value, tensor, err)) != SFT_OK)
				break;
			shards[n_shards++] = json_object_get_string(value);
		}
	}
	if (st == SFT_OK)
	{
		int			distinct = 0;

		qsort(shards, n_shards, sizeof(char *), compare_strings);
		for (int i = 0; i < n_shards; i++)
			if (distinct == 0 || strcmp(shards[distinct - 1], shards[i]) != 0)
				shards[distinct++] = shards[i];
		n_shards = distinct;
	}
	for (int i = 0; i < n_shards && st == SFT_OK; i++)
		st = load_file(dir, shards[i], weight_map, model, seen, &n_found, err);

	/*
	 * Each tensor found was mapped to its own shard and names are unique
	 * within a shard, so equal counts mean every mapped tensor was found.
	 */
	if (st == SFT_OK && n_found != n_entries)
		st = sft_error(err, SFT_ERR_INVALID,
					   "model.safetensors.index.json lists %d tensors but the shards hold %d",
					   n_entries, n_found);
	sft_free(shards);
	json_object_put(root);
	return st;
}

SftStatus
sft_hf_load_dir(const char *dir, SftModel **out, SftError *err)
{
	char		path[PATH_MAX];
	SftBuf		text;
	SftLlamaConfig cfg;
	SftModel   *model = NULL;
	uint8_t    *seen = NULL;
	SftStatus	st;

	*out = NULL;
	if ((st = join_path(path, dir, "config.json", err)) != SFT_OK ||
		(st = read_small_file(path, CONFIG_MAX_BYTES, &text, err)) != SFT_OK)
		return st;
	st = sft_llama_config_parse(text.data, text.len, &cfg, err);
	sft_buf_free(&text);
	if (st != SFT_OK)
		return st;
	if ((st = sft_model_new(&cfg, &model, err)) != SFT_OK)
		return st;
	seen = sft_calloc((size_t) sft_model_tensor_count(model) + 1, 1);
	if (seen == NULL)
	{
		sft_model_free(model);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory loading %s", dir);
	}

	if ((st = join_path(path, dir, "model.safetensors", err)) == SFT_OK)
	{
		if (file_exists(path))
		{
			int			n_found = 0;

			st = load_file(dir, "model.safetensors", NULL, model, seen, &n_found, err);
		}
		else
		{
			if ((st = join_path(path, dir, "model.safetensors.index.json", err)) == SFT_OK &&
				!file_exists(path))
				st = sft_error(err, SFT_ERR_IO,
							   "%s holds neither model.safetensors nor model.safetensors.index.json",
							   dir);
			if (st == SFT_OK)
				st = load_sharded(dir, model, seen, err);
		}
	}
	if (st == SFT_OK)
		st = sft_st_check_complete(model, seen, err);
	sft_free(seen);
	if (st != SFT_OK)
	{
		sft_model_free(model);
		return st;
	}
	*out = model;
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------- */

typedef struct FileSink
{
	int			fd;
	const char *path;
} FileSink;

static SftStatus
file_write(void *ctx, const void *data, size_t len, SftError *err)
{
	FileSink   *f = ctx;
	const char *p = data;

	while (len > 0)
	{
		ssize_t		n = write(f->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sft_error(err, SFT_ERR_IO, "could not write %s: %s", f->path,
							 strerror(errno));
		p += n;
		len -= (size_t) n;
	}
	return SFT_OK;
}

SftStatus
sft_write_file_atomically(const char *dir, const char *name, SftProducer produce,
						  const void *arg, SftError *err)
{
	char		final_path[PATH_MAX];
	char		tmp_name[300];
	char		tmp_path[PATH_MAX];
	FileSink	sink;
	SftStatus	st;

	snprintf(tmp_name, sizeof(tmp_name), "%s.tmp-%ld", name, (long) getpid());
	if ((st = join_path(final_path, dir, name, err)) != SFT_OK ||
		(st = join_path(tmp_path, dir, tmp_name, err)) != SFT_OK)
		return st;
	sink.path = tmp_path;
	sink.fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (sink.fd < 0)
		return sft_error(err, SFT_ERR_IO, "could not create %s: %s", tmp_path, strerror(errno));
	st = produce(arg, file_write, &sink, err);
	if (st == SFT_OK && fsync(sink.fd) != 0)
		st = sft_error(err, SFT_ERR_IO, "could not fsync %s: %s", tmp_path, strerror(errno));
	if (close(sink.fd) != 0 && st == SFT_OK)
		st = sft_error(err, SFT_ERR_IO, "could not close %s: %s", tmp_path, strerror(errno));
	if (st == SFT_OK && rename(tmp_path, final_path) != 0)
		st = sft_error(err, SFT_ERR_IO, "could not rename %s to %s: %s", tmp_path, final_path,
					   strerror(errno));
	if (st != SFT_OK)
		unlink(tmp_path);
	return st;
}

static SftStatus
produce_safetensors(const void *arg, SftWriteFn write, void *ctx, SftError *err)
{
	return sft_safetensors_write(arg, write, ctx, err);
}

static SftStatus
produce_config(const void *arg, SftWriteFn write, void *ctx, SftError *err)
{
	SftBuf		text;
	SftStatus	st;

	sft_buf_init(&text);
	st = sft_llama_config_to_json(sft_model_config(arg), &text, err);
	if (st == SFT_OK)
		st = write(ctx, text.data, text.len, err);
	sft_buf_free(&text);
	return st;
}

SftStatus
sft_hf_save_dir(const SftModel *model, const char *dir, SftError *err)
{
	struct stat sb;
	SftStatus	st;

	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return sft_error(err, SFT_ERR_IO, "%s is not an existing directory", dir);
	st = sft_write_file_atomically(dir, "model.safetensors", produce_safetensors, model, err);
	if (st == SFT_OK)
		st = sft_write_file_atomically(dir, "config.json", produce_config, model, err);
	return st;
}

/* ---------------------------------------------------------------------------
 * PEFT adapter directories (declared in lora_adapter.h)
 * ------------------------------------------------------------------------- */

int
sft_peft_dir_detect(const char *dir)
{
	char		path[PATH_MAX];

	return join_path(path, dir, "adapter_config.json", NULL) == SFT_OK && file_exists(path);
}

SftStatus
sft_peft_load_dir(const char *dir, const SftLlamaConfig *model_cfg, SftLoraAdapter **out,
				  char **base_name, SftError *err)
{
	char		path[PATH_MAX];
	SftBuf		text;
	SftLoraConfig cfg;
	FileSource	f;
	SftStatus	st;

	*out = NULL;
	if (base_name)
		*base_name = NULL;
	if ((st = join_path(path, dir, "adapter_config.json", err)) != SFT_OK ||
		(st = read_small_file(path, SFT_LORA_MAX_CONFIG_BYTES, &text, err)) != SFT_OK)
		return st;
	st = sft_lora_config_parse(text.data, text.len, &cfg, base_name, err);
	sft_buf_free(&text);
	if (st != SFT_OK)
		return st;
	if ((st = join_path(path, dir, "adapter_model.safetensors", err)) == SFT_OK &&
		!file_exists(path))
		st = sft_error(err, SFT_ERR_IO, "%s holds adapter_config.json but no adapter_model.safetensors",
					   dir);
	if (st == SFT_OK && (st = file_open(&f, path, err)) == SFT_OK)
	{
		st = sft_lora_adapter_read(file_read_at, &f, f.size, &cfg, model_cfg, out, err);
		close(f.fd);
		if (st != SFT_OK)
			sft_error_prefix(err, "adapter_model.safetensors: ");
	}
	if (st != SFT_OK && base_name && *base_name)
	{
		sft_free(*base_name);
		*base_name = NULL;
	}
	return st;
}

typedef struct PeftConfigArg
{
	const SftLoraAdapter *adapter;
	const char *base_name;
} PeftConfigArg;

static SftStatus
produce_adapter(const void *arg, SftWriteFn write, void *ctx, SftError *err)
{
	return sft_lora_adapter_write(arg, write, ctx, err);
}

static SftStatus
produce_adapter_config(const void *arg, SftWriteFn write, void *ctx, SftError *err)
{
	const PeftConfigArg *a = arg;
	SftBuf		text;
	SftStatus	st;

	sft_buf_init(&text);
	st = sft_lora_config_to_json(&a->adapter->config, a->base_name, &text, err);
	if (st == SFT_OK)
		st = write(ctx, text.data, text.len, err);
	sft_buf_free(&text);
	return st;
}

SftStatus
sft_peft_save_dir(const SftLoraAdapter *adapter, const char *base_name, const char *dir,
				  SftError *err)
{
	PeftConfigArg arg = {adapter, base_name};
	struct stat sb;
	SftStatus	st;

	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return sft_error(err, SFT_ERR_IO, "%s is not an existing directory", dir);
	st = sft_write_file_atomically(dir, "adapter_model.safetensors", produce_adapter, adapter,
								   err);
	if (st == SFT_OK)
		st = sft_write_file_atomically(dir, "adapter_config.json", produce_adapter_config, &arg,
									   err);
	return st;
}
