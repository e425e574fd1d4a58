/*
 * model_export_gguf.c: sft_model_export(..., format => 'gguf') — a model as
 * NAME.gguf for llama.cpp plus an Ollama Modelfile beside it.
 *
 * sft_model_export (model_catalog.c) has already checked the caller's role
 * (pg_write_server_files), that the caller owns the model, and the
 * directory.  Here: the dtype, the file name, the tokenizer's chat template
 * and end-of-turn token, then two atomic writes (temporary file, rename):
 * the GGUF streamed through the core's writer (it is as large as the
 * weights), the Modelfile through server_files.c.  When the Modelfile cannot be written the .gguf just
 * written is removed again, so a failed export leaves neither file.
 */
#include "postgres.h"

#include <unistd.h>

#include "nodes/pg_list.h"
#include "utils/builtins.h"

#include "core/gguf_export.h"
#include "core/weights.h"
#include "model_catalog.h"
#include "server_files.h"
#include "sft.h"
#include "tokenizer.h"

typedef struct GgufJob
{
	const SftModel *model;
	const SftTokenizer *tok;
	SftGgufExportOptions opt;
} GgufJob;

static SftStatus
ProduceGguf(const void *arg, SftWriteFn write, void *ctx, SftError *err)
{
	const GgufJob *job = arg;

	return sft_gguf_export_model(job->model, job->tok, &job->opt, write, ctx, err);
}

/* The model name becomes a file name: refuse what cannot be one. */
static void
CheckFileName(const char *name)
{
	if (name[0] == '.' || strchr(name, '/') != NULL || strpbrk(name, "\"\n\r\t") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name \"%s\" cannot be a GGUF file name", name),
				 errdetail("The file is named after the model: no \"/\", quotes or line breaks, and no leading dot.")));
}

/* Append PARAMETER stop "<token text>" for id, once. */
static void
AppendStop(StringInfo buf, const SftTokenizer *tok, int32 id, List **seen)
{
	const char *text;
	size_t		len;
	ListCell   *lc;

	if (id < 0 || (text = sft_tokenizer_id_to_token(tok, id, &len)) == NULL)
		return;
	foreach(lc, *seen)
		if (lfirst_int(lc) == id)
			return;
	*seen = lappend_int(*seen, id);
	if (memchr(text, '"', len) || memchr(text, '\n', len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stop token %d contains a quote or a line break, which a Modelfile cannot hold", id)));
	appendStringInfo(buf, "PARAMETER stop \"%.*s\"\n", (int) len, text);
}

static char *
ModelfileText(const SftModelRow *row, const SftTokenizerEntry *entry, const char *file)
{
	StringInfoData buf;
	List	   *seen = NIL;

	initStringInfo(&buf);
	appendStringInfo(&buf, "FROM ./%s\n", file);
	AppendStop(&buf, entry->tok, entry->end_of_turn_id, &seen);
	AppendStop(&buf, entry->tok, entry->eos_id, &seen);
	AppendStop(&buf, entry->tok, row->config.eos_token_id, &seen);
	if (row->system_prompt)
	{
		if (strstr(row->system_prompt, "\"\"\"") != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the system prompt of model \"%s\" contains \"\"\", which a Modelfile SYSTEM block cannot hold",
							row->name)));
		appendStringInfo(&buf, "SYSTEM \"\"\"%s\"\"\"\n", row->system_prompt);
	}
	return buf.data;
}

List *
SftModelExportGguf(const SftModelRow *row, const char *dir, const char *dtype)
{
	const SftTokenizerEntry *entry = SftTokenizerLookup(row->tokenizer);
	GgufJob		job;
	SftError	err = {0};
	char	   *file;
	char	   *modelfile;
	char	   *gguf_path;
	SftModel   *model;

	memset(&job, 0, sizeof(job));
	if (sft_ggml_type_from_name(dtype, &job.opt.dtype, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err.message)));
	CheckFileName(row->name);
	file = psprintf("%s.gguf", row->name);
	gguf_path = psprintf("%s/%s", dir, file);
	job.opt.name = row->name;
	job.opt.chat_template = entry->has_template ? SftTokenizerChatJinja(entry) : NULL;
	job.opt.eot_id = entry->end_of_turn_id;
	job.tok = entry->tok;
	modelfile = ModelfileText(row, entry, file);

	model = SftModelLoadWeights(row);
	PG_TRY();
	{
		job.model = model;
		if (sft_write_file_atomically(dir, file, ProduceGguf, &job, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("exporting model \"%s\" to GGUF", row->name));
	}
	PG_FINALLY();
	{
		sft_model_free(model);
	}
	PG_END_TRY();
	PG_TRY();
	{
		SftWriteServerFile(psprintf("%s/Modelfile", dir), modelfile, strlen(modelfile));
	}
	PG_CATCH();
	{
		unlink(gguf_path);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return list_make2(gguf_path, psprintf("%s/Modelfile", dir));
}
