/*
 * train.c: the caller's side of training: sft_train, sft_wait, sft_cancel,
 * sft_resume, sft_run_drop, the progress view, option parsing and the GUCs.
 *
 * How a run starts.  sft_train() checks everything it can in the caller's
 * session (options, source and column privileges, base model ownership,
 * output name, memory estimate), inserts the run row, reserves a progress
 * slot and starts a dynamic background worker.  The worker cannot see the
 * row until the calling transaction commits, so it first waits on that
 * transaction's lock: if the caller rolls back, the worker finds no row and
 * exits, and nothing is left behind.  Hence sft_train() returns at once, the
 * run begins at commit, and sft_wait() in the same transaction is refused
 * (it would wait for itself).
 *
 * Who the worker is.  It connects to the caller's database as the calling
 * role (current_user), so the source is read with that role's privileges and
 * row-level security.  PostgreSQL 15 lets a background worker connect only
 * as a role that may log in; for a NOLOGIN role (SET ROLE to a group) it
 * connects as the role the session authenticated as and switches to the
 * calling role at once, as a SECURITY DEFINER function would.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "core/chat_template.h"
#include "core/model.h"
#include "catalog.h"
#include "largeobject.h"
#include "model_catalog.h"
#include "progress.h"
#include "tokenizer.h"
#include "sft.h"
#include "train.h"
#include "training_rows.h"

PG_FUNCTION_INFO_V1(sft_train);
PG_FUNCTION_INFO_V1(sft_wait);
PG_FUNCTION_INFO_V1(sft_cancel);
PG_FUNCTION_INFO_V1(sft_resume);
PG_FUNCTION_INFO_V1(sft_run_drop);
PG_FUNCTION_INFO_V1(sft_run_active);
PG_FUNCTION_INFO_V1(sft_progress_rows);

int			sft_max_concurrent_runs = 2;
int			sft_max_memory_mb = 4096;
int			sft_threads = 0;

/* How often sft_wait() reports progress. */
#define SFT_WAIT_NOTICE_MS 5000

void
SftTrainInit(void)
{
	DefineCustomIntVariable("sft.max_concurrent_runs",
							"Maximum number of training runs active at once in the cluster.",
							"Each run is a background worker and counts against max_worker_processes.",
							&sft_max_concurrent_runs, 2, 1, SFT_MAX_RUN_SLOTS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sft.max_memory",
							"Memory a training run (parameters, gradients, optimizer state, activations) may plan to use.",
							"sft_train() refuses runs whose estimate exceeds it; sft_model_create() and sft_model_import() refuse models whose parameters alone exceed it.",
							&sft_max_memory_mb, 4096, 16, INT_MAX / 2,
							PGC_SUSET, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("sft.threads",
							"Threads a training run uses for matrix products (0: OpenBLAS's default, all cores).",
							"Taken when the run is started and kept for its resumptions.",
							&sft_threads, 0, 0, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);
	SftProgressInstallHooks();
}

/* ---------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------- */

static const char *const SftOptionNames[] = {
	"grad_accum", "lr_schedule", "warmup_ratio", "min_lr_ratio", "weight_decay",
	"dropout", "max_grad_norm", "seed", "validation", "validation_fraction",
	"messages_column", "template", "template_kwargs", "template_now", "train_on", "too_long", "keep",
	"log_every", "lora", "checkpoint_activations", NULL
};


static double
SftOptionNumber(const char *key, const JsonbValue *v)
{
	double		d;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number, not %s", key, SftDescribeJsonbValue(v))));
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if (!isfinite(d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be finite", key)));
	return d;
}

static double
SftOptionRange(const char *key, const JsonbValue *v, double lo, bool lo_open,
			   double hi, bool hi_open)
{
	double		d = SftOptionNumber(key, v);

	if ((lo_open ? d <= lo : d < lo) || (hi_open ? d >= hi : d > hi))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be in %s%g, %g%s, not %g", key,
						lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]", d)));
	return d;
}

static int64
SftOptionInteger(const char *key, const JsonbValue *v, int64 lo, int64 hi)
{
	int64		i = 0;
	bool		ok = true;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer, not %s", key, SftDescribeJsonbValue(v))));
	if (numeric_is_nan(v->val.numeric) || numeric_is_inf(v->val.numeric))
		ok = false;
	else
	{
		/* exact: through the decimal text, "12" and "12.000" both being 12 */
		char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
															   NumericGetDatum(v->val.numeric)));
		char	   *end;

		errno = 0;
		i = strtoll(text, &end, 10);
		if (errno != 0 || end == text)
			ok = false;
		else if (*end == '.')
			while (*++end == '0')
				;
		if (*end != '\0')
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer", key)));
	if (i < lo || i > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be between %lld and %lld, not %lld", key,
						(long long) lo, (long long) hi, (long long) i)));
	return i;
}

static char *
SftOptionString(const char *key, const JsonbValue *v)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a string, not %s", key, SftDescribeJsonbValue(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Index of value among choices, or ERROR listing them. */
static int
SftOptionChoice(const char *key, const JsonbValue *v, const char *const *choices)
{
	char	   *s = SftOptionString(key, v);
	StringInfoData list;

	for (int i = 0; choices[i]; i++)
		if (strcmp(s, choices[i]) == 0)
			return i;
	initStringInfo(&list);
	for (int i = 0; choices[i]; i++)
		appendStringInfo(&list, "%s%s", i ? ", " : "", choices[i]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" has an unknown value \"%s\"", key, s),
			 errhint("Valid values: %s.", list.data)));
	return -1;
}

static bool
SftOptionBool(const char *key, const JsonbValue *v)
{
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be true or false, not %s", key, SftDescribeJsonbValue(v))));
	return v->val.boolean;
}

/*
 * PEFT's default target_modules for the architectures we compute
 * (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: llama, qwen2, qwen3,
 * gemma3_text ... all ["q_proj", "v_proj"]).
 */
#define SFT_LORA_DEFAULT_TARGETS (SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V))

static uint32
SftLoraTargetsParse(const JsonbValue *v)
{
	uint32		targets = 0;

	if (v->type == jbvString)
	{
		if (v->val.string.len == 10 && strncmp(v->val.string.val, "all-linear", 10) == 0)
			return SFT_LORA_TARGET_ALL;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lora\": \"target_modules\" must be \"all-linear\" or an array of module names, not \"%.*s\"",
						v->val.string.len, v->val.string.val)));
	}
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lora\": \"target_modules\" must be \"all-linear\" or an array of module names, not %s",
						SftDescribeJsonbValue(v))));
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			char	   *name;
			int			module;

			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"lora\": target_modules[%d] must be a string, not %s",
								i, SftDescribeJsonbValue(&e))));
			name = pnstrdup(e.val.string.val, e.val.string.len);
			module = sft_lora_module_from_name(name);
			if (module < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"lora\": target_modules[%d] \"%s\" is not a module of the model", i, name),
						 errhint("Valid modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (or \"all-linear\" for all of them).")));
			if (targets & SFT_LORA_TARGET(module))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"lora\": target_modules lists \"%s\" twice", name)));
			targets |= SFT_LORA_TARGET(module);
			i++;
		}
	}
	if (targets == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lora\": target_modules must not be empty")));
	return targets;
}

/*
 * "lora": {"r", "alpha", "dropout", "target_modules", "rslora"}, PEFT's
 * LoraConfig defaults (r 8, lora_alpha 8, lora_dropout 0, use_rslora false)
 * and its per-architecture target_modules default.
 */
static void
SftLoraOptionParse(SftLoraConfig *cfg, const JsonbValue *v)
{
	SftError	err = {0};

	cfg->r = 8;
	cfg->alpha = 8;
	cfg->dropout = 0;
	cfg->rslora = 0;
	cfg->targets = SFT_LORA_DEFAULT_TARGETS;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lora\" must be an object, not %s", SftDescribeJsonbValue(v)),
				 errhint("For example {\"r\": 16, \"alpha\": 32, \"dropout\": 0.05, \"target_modules\": \"all-linear\"}.")));
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				key = pnstrdup(e.val.string.val, e.val.string.len);
				if (strcmp(key, "r") != 0 && strcmp(key, "alpha") != 0 &&
					strcmp(key, "dropout") != 0 && strcmp(key, "target_modules") != 0 &&
					strcmp(key, "rslora") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"lora\" has an unknown key \"%s\"", key),
							 errhint("Valid keys: r, alpha, dropout, target_modules, rslora.")));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (strcmp(key, "r") == 0)
				cfg->r = (int) SftOptionInteger("lora.r", &e, 1, SFT_LORA_MAX_RANK);
			else if (strcmp(key, "alpha") == 0)
				cfg->alpha = SftOptionRange("lora.alpha", &e, 0, true, 1e6, false);
			else if (strcmp(key, "dropout") == 0)
				cfg->dropout = SftOptionRange("lora.dropout", &e, 0, false, 1, true);
			else if (strcmp(key, "target_modules") == 0)
				cfg->targets = SftLoraTargetsParse(&e);
			else if (strcmp(key, "rslora") == 0)
				cfg->rslora = SftOptionBool("lora.rslora", &e);
		}
	}
	if (sft_lora_config_validate(cfg, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lora\": %s", err.message)));
}

static void
SftCheckArgument(bool ok, const char *fmt, double value)
{
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(fmt, value)));
}

void
SftTrainOptionsParse(SftTrainOptions *opts, int epochs, double learning_rate,
					 int max_length, int batch_size, Jsonb *options)
{
	static const char *const schedules[] = {"cosine", "linear", "constant", NULL};
	static const char *const train_ons[] = {"all_assistant", "last_assistant", NULL};
	static const char *const too_longs[] = {"drop", "truncate", NULL};
	static const char *const keeps[] = {"last", "best", NULL};
	bool		have_validation_fraction = false;

	memset(opts, 0, sizeof(*opts));
	SftCheckArgument(epochs >= 1 && epochs <= 100000, "epochs must be between 1 and 100000, not %g", epochs);
	SftCheckArgument(isfinite(learning_rate) && learning_rate > 0 && learning_rate <= 1,
					 "learning_rate must be in (0, 1], not %g", learning_rate);
	SftCheckArgument(max_length >= 2 && max_length <= 1048576,
					 "max_length must be between 2 and 1048576, not %g", max_length);
	SftCheckArgument(batch_size >= 1 && batch_size <= 65536,
					 "batch_size must be between 1 and 65536, not %g", batch_size);
	opts->epochs = epochs;
	opts->learning_rate = learning_rate;
	opts->max_length = max_length;
	opts->batch_size = batch_size;

	/* Defaults (Hugging Face Trainer's where it has one). */
	opts->grad_accum = 1;
	opts->lr_schedule = SFT_LR_COSINE;
	opts->warmup_ratio = 0.0;
	opts->min_lr_ratio = 0.0;
	opts->weight_decay = 0.0;
	opts->dropout = 0.0;
	opts->max_grad_norm = 1.0;
	opts->seed = 42;
	opts->validation = NULL;
	opts->validation_fraction = 0.0;
	opts->messages_column = pstrdup("messages");
	opts->template_name = NULL;
	opts->template_kwargs = NULL;
	opts->template_now = NULL;
	opts->train_on = SFT_TRAIN_ALL_ASSISTANT;
	opts->truncate = false;
	opts->keep_best = false;
	opts->log_every = 10;
	opts->lora = false;
	opts->checkpoint_activations = false;

	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	{
		JsonbIterator *it = JsonbIteratorInit(&options->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				bool		known = false;

				key = pnstrdup(v.val.string.val, v.val.string.len);
				for (int i = 0; SftOptionNames[i]; i++)
					if (strcmp(key, SftOptionNames[i]) == 0)
						known = true;
				if (!known)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown option \"%s\"", key),
							 errhint("Valid options: grad_accum, lr_schedule, warmup_ratio, min_lr_ratio, weight_decay, dropout, max_grad_norm, seed, validation, validation_fraction, messages_column, template, template_kwargs, template_now, train_on, too_long, keep, log_every, lora, checkpoint_activations.")));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;

			/*
			 * validation, template, its kwargs/clock and lora accept null:
			 * "none" / "the tokenizer's" / "full fine-tuning".
			 */
			if (v.type == jbvNull && (strcmp(key, "validation") == 0 || strcmp(key, "template") == 0 ||
									  strcmp(key, "template_kwargs") == 0 ||
									  strcmp(key, "template_now") == 0 || strcmp(key, "lora") == 0))
				continue;

			if (strcmp(key, "grad_accum") == 0)
				opts->grad_accum = (int) SftOptionInteger(key, &v, 1, 65536);
			else if (strcmp(key, "lr_schedule") == 0)
				opts->lr_schedule = (SftLrSchedule) SftOptionChoice(key, &v, schedules);
			else if (strcmp(key, "warmup_ratio") == 0)
				opts->warmup_ratio = SftOptionRange(key, &v, 0, false, 1, true);
			else if (strcmp(key, "min_lr_ratio") == 0)
				opts->min_lr_ratio = SftOptionRange(key, &v, 0, false, 1, false);
			else if (strcmp(key, "weight_decay") == 0)
				opts->weight_decay = SftOptionRange(key, &v, 0, false, 10, false);
			else if (strcmp(key, "dropout") == 0)
				opts->dropout = SftOptionRange(key, &v, 0, false, 1, true);
			else if (strcmp(key, "max_grad_norm") == 0)
				opts->max_grad_norm = SftOptionRange(key, &v, 0, false, 1e9, false);
			else if (strcmp(key, "seed") == 0)
				opts->seed = SftOptionInteger(key, &v, PG_INT64_MIN, PG_INT64_MAX);
			else if (strcmp(key, "validation") == 0)
			{
				opts->validation = SftOptionString(key, &v);
				if (opts->validation[0] == '\0')
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"validation\" must name a table or view")));
			}
			else if (strcmp(key, "validation_fraction") == 0)
			{
				opts->validation_fraction = SftOptionRange(key, &v, 0, false, 1, true);
				have_validation_fraction = opts->validation_fraction > 0;
			}
			else if (strcmp(key, "messages_column") == 0)
			{
				opts->messages_column = SftOptionString(key, &v);
				if (opts->messages_column[0] == '\0')
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"messages_column\" must not be empty")));
			}
			else if (strcmp(key, "template") == 0)
			{
				SftTemplateKind kind;
				SftError	err = {0};

				opts->template_name = SftOptionString(key, &v);
				if (sft_template_from_name(opts->template_name, &kind, &err) != SFT_OK)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"template\": %s", err.message)));
			}
			else if (strcmp(key, "template_kwargs") == 0)
			{
				SftTemplateCall call;

				if (v.type != jbvBinary)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"template_kwargs\" must be a JSON object")));
				opts->template_kwargs = JsonbValueToJsonb(&v);
				/* the same checks as every function's template_kwargs argument */
				SftTemplateCallMake(&call, opts->template_kwargs, NULL);
			}
			else if (strcmp(key, "template_now") == 0)
				opts->template_now =
					SftTemplateNowText(SftTemplateNowFromText(SftOptionString(key, &v),
															  "option \"template_now\""));
			else if (strcmp(key, "train_on") == 0)
				opts->train_on = (SftTrainOn) SftOptionChoice(key, &v, train_ons);
			else if (strcmp(key, "too_long") == 0)
				opts->truncate = SftOptionChoice(key, &v, too_longs) == 1;
			else if (strcmp(key, "keep") == 0)
				opts->keep_best = SftOptionChoice(key, &v, keeps) == 1;
			else if (strcmp(key, "log_every") == 0)
				opts->log_every = (int) SftOptionInteger(key, &v, 1, INT_MAX);
			else if (strcmp(key, "lora") == 0)
			{
				SftLoraOptionParse(&opts->lora_config, &v);
				opts->lora = true;
			}
			else if (strcmp(key, "checkpoint_activations") == 0)
				opts->checkpoint_activations = SftOptionBool(key, &v);
		}
	}
	if (opts->validation && have_validation_fraction)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options \"validation\" and \"validation_fraction\" cannot both be set")));
	if (opts->keep_best && !opts->validation && !have_validation_fraction)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"keep\": \"best\" needs a validation set"),
				 errhint("Set \"validation\" to a table or view, or \"validation_fraction\" above 0.")));
}

static void
SftJsonKey(StringInfo s, const char *key)
{
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfoString(s, ": ");
}

static void
SftJsonNumber(StringInfo s, const char *key, double d)
{
	SftJsonKey(s, key);
	appendStringInfo(s, "%.17g", d);
}

static void
SftJsonString(StringInfo s, const char *key, const char *value)
{
	SftJsonKey(s, key);
	if (value)
		escape_json(s, value);
	else
		appendStringInfoString(s, "null");
}

void
SftTrainOptionsPinClock(SftTrainOptions *opts)
{
	SftTemplateCall call;

	if (opts->template_now)
		return;
	SftTemplateCallMake(&call, NULL, NULL);
	opts->template_now = SftTemplateNowText(call.now_set ? call.now :
											timestamptz_to_time_t(GetCurrentTimestamp()));
}

Jsonb *
SftTrainOptionsToJsonb(const SftTrainOptions *opts)
{
	static const char *const schedules[] = {"cosine", "linear", "constant"};
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	SftJsonNumber(&s, "grad_accum", opts->grad_accum);
	SftJsonString(&s, "lr_schedule", schedules[opts->lr_schedule]);
	SftJsonNumber(&s, "warmup_ratio", opts->warmup_ratio);
	SftJsonNumber(&s, "min_lr_ratio", opts->min_lr_ratio);
	SftJsonNumber(&s, "weight_decay", opts->weight_decay);
	SftJsonNumber(&s, "dropout", opts->dropout);
	SftJsonNumber(&s, "max_grad_norm", opts->max_grad_norm);
	SftJsonKey(&s, "seed");
	appendStringInfo(&s, INT64_FORMAT, opts->seed);
	SftJsonString(&s, "validation", opts->validation);
	SftJsonNumber(&s, "validation_fraction", opts->validation_fraction);
	SftJsonString(&s, "messages_column", opts->messages_column);
	SftJsonString(&s, "template", opts->template_name);
	SftJsonKey(&s, "template_kwargs");
	if (opts->template_kwargs)
		appendStringInfoString(&s, JsonbToCString(NULL, &opts->template_kwargs->root,
												  VARSIZE(opts->template_kwargs)));
	else
		appendStringInfoString(&s, "null");
	SftJsonString(&s, "template_now", opts->template_now);
	SftJsonString(&s, "train_on", sft_train_on_name(opts->train_on));
	SftJsonString(&s, "too_long", opts->truncate ? "truncate" : "drop");
	SftJsonString(&s, "keep", opts->keep_best ? "best" : "last");
	SftJsonNumber(&s, "log_every", opts->log_every);
	SftJsonKey(&s, "lora");
	if (opts->lora)
	{
		const SftLoraConfig *l = &opts->lora_config;
		bool		first = true;

		appendStringInfo(&s, "{\"r\": %d, \"alpha\": %.17g, \"dropout\": %.17g, \"rslora\": %s, \"target_modules\": [",
						 l->r, l->alpha, l->dropout, l->rslora ? "true" : "false");
		/* sorted by name, as PEFT writes target_modules: the i-th has i names below it */
		for (int i = 0; i < SFT_LORA_N_MODULES; i++)
		{
			const char *best = NULL;

			for (int m = 0; m < SFT_LORA_N_MODULES; m++)
			{
				const char *name = sft_lora_module_name((SftLoraModule) m);
				int			below = 0;

				if (!(l->targets & SFT_LORA_TARGET(m)))
					continue;
				for (int k = 0; k < SFT_LORA_N_MODULES; k++)
					if ((l->targets & SFT_LORA_TARGET(k)) &&
						strcmp(sft_lora_module_name((SftLoraModule) k), name) < 0)
						below++;
				if (below == i)
					best = name;
			}
			if (best == NULL)
				break;
			appendStringInfo(&s, "%s\"%s\"", first ? "" : ", ", best);
			first = false;
		}
		appendStringInfoString(&s, "]}");
	}
	else
		appendStringInfoString(&s, "null");
	SftJsonKey(&s, "checkpoint_activations");
	appendStringInfoString(&s, opts->checkpoint_activations ? "true" : "false");
	appendStringInfoChar(&s, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}

/* ---------------------------------------------------------------------------
 * Starting a worker
 * ------------------------------------------------------------------------- */

static Oid
SftLoginRoleFor(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	bool		canlogin;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", role);
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return canlogin ? role : GetAuthenticatedUserId();
}

/* Release a slot if it still holds the run (the worker may have released it). */
static void
SftReleaseIfHeld(int slot, int64 run_id)
{
	SftRunProgress p;

	if (SftProgressRead(slot, run_id, MyDatabaseId, &p))
		SftProgressRelease(slot);
}

static void
SftStartWorker(int64 run_id, Oid run_role, bool resume)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	SftWorkerArgs args;
	pid_t		pid;
	BgwHandleStatus status;
	int			slot;

	StaticAssertStmt(sizeof(SftWorkerArgs) <= BGW_EXTRALEN, "SftWorkerArgs too big for bgw_extra");

	memset(&args, 0, sizeof(args));
	args.dboid = MyDatabaseId;
	args.run_role = run_role;
	args.login_role = SftLoginRoleFor(args.run_role);
	args.creator_xid = GetTopTransactionId();
	args.resume = resume;
	slot = SftProgressReserve(run_id, MyDatabaseId, args.run_role, args.creator_xid,
							  sft_max_concurrent_runs);
	args.slot = slot;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "sft");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "SftTrainWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "sft training run %lld", (long long) run_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "sft training");
	worker.bgw_main_arg = Int64GetDatum(run_id);
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		SftProgressRelease(slot);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for training run %lld: no free worker slot",
						(long long) run_id),
				 errhint("Raise max_worker_processes (now %d) and restart the server, or wait for other background workers to finish.",
						 max_worker_processes)));
	}
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED)
	{
		SftReleaseIfHeld(slot, run_id);
		if (status == BGWH_POSTMASTER_DIED)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("cannot start a training worker without the postmaster")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the background worker of training run %lld stopped at start-up",
						(long long) run_id),
				 errhint("See the server log for the reason.")));
	}
}

/* ---------------------------------------------------------------------------
 * The memory check
 * ------------------------------------------------------------------------- */

void
SftTrainCheckMemory(const SftLlamaConfig *cfg, const char *base, const SftTrainOptions *opts,
					int limit_mb, const SftTrainDataSize *data)
{
	Size		batch_tokens = (Size) opts->batch_size * opts->max_length;
	/* the worker's micro-batch copy: tokens and mask */
	SftTrainerOptions topts = {
		.max_tokens = (int) batch_tokens,
		.dropout = (float) opts->dropout,
		.checkpoint_activations = opts->checkpoint_activations
	};
	/* the trainer (LoRA and checkpointing aware) + the worker's micro-batch copy: tokens and mask */
	double		need = (double) sft_trainer_memory_estimate_for(cfg, &topts,
																opts->lora ? &opts->lora_config : NULL) +
		(double) batch_tokens * 2 * sizeof(int32);
	double		need_mb;

	if (data)
		need += (double) data->bytes;
	need_mb = need / (1024.0 * 1024.0);
	if (need_mb <= (double) limit_mb)
		return;
	if (data == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("training would need about %.0f MB, more than sft.max_memory (%d MB)",
						need_mb, limit_mb),
				 errdetail("Model \"%s\" with micro-batches of %d sequences of up to %d tokens.",
						   base, opts->batch_size, opts->max_length),
				 errhint("Lower batch_size (and raise the grad_accum option to keep the effective batch) or max_length, or raise sft.max_memory.")));
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("training would need about %.0f MB with its data, more than sft.max_memory (%d MB) when the run was started",
					need_mb, limit_mb),
			 errdetail("Model \"%s\" with micro-batches of %d sequences of up to %d tokens, and %s%lld tokens in %lld rows of training data (about %.0f MB).",
					   base, opts->batch_size, opts->max_length,
					   data->complete ? "" : "at least ", (long long) data->tokens,
					   (long long) data->rows, (double) data->bytes / (1024.0 * 1024.0)),
			 errhint("Train on fewer rows (filter the source), lower max_length, or raise sft.max_memory and start a new run.")));
}

/* ---------------------------------------------------------------------------
 * sft_train
 * ------------------------------------------------------------------------- */

/*
 * Training from an adapter model continues that adapter on its base: the
 * run is a LoRA run with the adapter's rank, alpha, rslora and targets (a
 * "lora" option may restate them and may change the dropout, which is a
 * training setting, but not the shape).
 */
static void
SftTrainFromAdapter(SftTrainOptions *opts, const SftModelRow *adapter)
{
	SftLoraConfig have = adapter->lora;

	if (opts->lora)
	{
		const SftLoraConfig *want = &opts->lora_config;

		if (want->r != have.r || want->alpha != have.alpha || want->rslora != have.rslora ||
			want->targets != have.targets)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"lora\" does not match adapter \"%s\" (r %d, alpha %g, rslora %s), which this run would continue",
							adapter->name, have.r, have.alpha, have.rslora ? "true" : "false"),
					 errhint("Leave \"lora\" out to continue the adapter with its own settings, or train a new adapter from its base \"%s\".",
							 adapter->parent)));
		have.dropout = want->dropout;
	}
	opts->lora = true;
	opts->lora_config = have;
}

Datum
sft_train(PG_FUNCTION_ARGS)
{
	char	   *source = SftTextArgNotNull(fcinfo, 0, "source");
	char	   *base = SftTextArgNotNull(fcinfo, 1, "base");
	char	   *output = SftTextArgNotNull(fcinfo, 2, "output");
	SftTrainOptions opts;
	SftModelRow base_row;
	char	   *source_qualified;
	Jsonb	   *effective;
	int64		run_id;
	SftRunSpec	spec;

	for (int i = 3; i <= 7; i++)
		SftArgNotNull(fcinfo, i, i == 3 ? "epochs" : i == 4 ? "learning_rate" :
						  i == 5 ? "max_length" : i == 6 ? "batch_size" : "options");
	SftProgressRequireShmem();

	SftTrainOptionsParse(&opts, PG_GETARG_INT32(3), PG_GETARG_FLOAT8(4), PG_GETARG_INT32(5),
						 PG_GETARG_INT32(6), PG_GETARG_JSONB_P(7));
	SftTrainOptionsPinClock(&opts);

	source_qualified = SftTrainingSourceCheck(source, opts.messages_column, "source");
	if (opts.validation)
		opts.validation = SftTrainingSourceCheck(opts.validation, opts.messages_column, "validation relation");

	SftModelFetch(base, &base_row, false);
	SftModelCheckOwner(&base_row, "train from");
	SftModelCheckNameFree(output, 0);
	if (opts.max_length > base_row.config.max_position)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_length %d exceeds the context of model \"%s\" (max_position_embeddings %d)",
						opts.max_length, base, base_row.config.max_position)));
	if ((int64) opts.batch_size * opts.max_length > INT_MAX / 4)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("batch_size * max_length is too large")));

	if (base_row.is_adapter)
		SftTrainFromAdapter(&opts, &base_row);
	SftTrainCheckMemory(&base_row.config, base, &opts, sft_max_memory_mb, NULL);

	effective = SftTrainOptionsToJsonb(&opts);
	memset(&spec, 0, sizeof(spec));
	spec.owner = GetUserId();
	spec.source = source_qualified;
	spec.base = base;
	spec.output = output;
	spec.epochs = opts.epochs;
	spec.learning_rate = opts.learning_rate;
	spec.max_length = opts.max_length;
	spec.batch_size = opts.batch_size;
	spec.options = effective;
	spec.threads = sft_threads;
	spec.max_memory_mb = sft_max_memory_mb;
	spec.tokenizer = base_row.tokenizer;
	run_id = SftCatalogRunInsert(&spec);

	SftStartWorker(run_id, GetUserId(), false);
	PG_RETURN_INT64(run_id);
}

/* ---------------------------------------------------------------------------
 * Reading a run row
 * ------------------------------------------------------------------------- */

typedef struct SftRunRow
{
	int64		id;
	Oid			owner;
	char	   *status;			/* as stored */
	char	   *output;
	char	   *error;
	bool		active;			/* owns a progress slot */
} SftRunRow;

static bool
SftRunFetch(int64 run_id, SftRunRow *row, bool for_update)
{
	SftRunSpec	spec;

	memset(row, 0, sizeof(*row));
	if (!SftCatalogRunRead(run_id, for_update, &spec))
		return false;
	row->id = run_id;
	row->owner = spec.owner;
	row->status = spec.status;
	row->output = spec.output;
	row->error = spec.error;
	row->active = SftProgressIsActive(run_id, MyDatabaseId);
	return true;
}

static void
SftRunFetchOrError(int64 run_id, SftRunRow *row, bool for_update)
{
	if (!SftRunFetch(run_id, row, for_update))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("training run %lld does not exist", (long long) run_id)));
}

/* The status users see: queued/running without a live worker is interrupted. */
static const char *
SftRunVisibleStatus(const SftRunRow *row)
{
	if (!row->active && (strcmp(row->status, "queued") == 0 || strcmp(row->status, "running") == 0))
		return "interrupted";
	return row->status;
}

/* ---------------------------------------------------------------------------
 * sft_wait, sft_cancel
 * ------------------------------------------------------------------------- */

static void
SftReportProgress(const SftRunProgress *p)
{
	if (p->phase == SFT_PHASE_TRAINING || p->phase == SFT_PHASE_VALIDATING ||
		p->phase == SFT_PHASE_CHECKPOINTING || p->phase == SFT_PHASE_SAVING)
	{
		char		eta[64] = "";

		if (p->eta_seconds >= 0)
			snprintf(eta, sizeof(eta), ", about %d:%02d:%02d left",
					 (int) (p->eta_seconds / 3600), (int) fmod(p->eta_seconds / 60, 60),
					 (int) fmod(p->eta_seconds, 60));
		ereport(NOTICE,
				(errmsg("run %lld: %s, epoch %d/%d, step %lld/%lld, loss %.4f, %.0f tokens/s%s",
						(long long) p->run_id, SftRunPhaseName(p->phase), p->epoch, p->epochs,
						(long long) p->step, (long long) p->steps, p->loss,
						p->tokens_per_s, eta)));
	}
	else
		ereport(NOTICE,
				(errmsg("run %lld: %s, %lld rows read", (long long) p->run_id,
						SftRunPhaseName(p->phase), (long long) p->rows_read)));
}

static long
SftIntervalMs(Interval *span)
{
	int64		us = span->time + span->day * USECS_PER_DAY +
		(int64) span->month * DAYS_PER_MONTH * USECS_PER_DAY;

	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	return (long) Min(us / 1000, (int64) LONG_MAX / 2);
}

/* Refuse to wait for a run whose worker waits for this very transaction. */
static void
SftCheckNotOwnTransaction(const SftRunProgress *p, const char *what)
{
	if (p->phase == SFT_PHASE_STARTING && TransactionIdIsValid(p->creator_xid) &&
		TransactionIdIsCurrentTransactionId(p->creator_xid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("training run %lld starts when this transaction commits", (long long) p->run_id),
				 errhint("Commit before calling %s.", what)));
}

Datum
sft_wait(PG_FUNCTION_ARGS)
{
	int64		run_id;
	long		timeout_ms = -1;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz last_notice = 0;	/* report once at once, then every few seconds */
	SftRunRow	row;

	SftArgNotNull(fcinfo, 0, "run");
	run_id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
		timeout_ms = SftIntervalMs(PG_GETARG_INTERVAL_P(1));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("sft_wait() cannot see a run finish inside a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Call it in READ COMMITTED mode.")));
	SftRunFetchOrError(run_id, &row, false);

	for (;;)
	{
		int			slot = SftProgressFind(run_id, MyDatabaseId);
		SftRunProgress p;
		long		sleep_ms = SFT_WAIT_NOTICE_MS;
		TimestampTz now;

		if (slot < 0 || !SftProgressRead(slot, run_id, MyDatabaseId, &p))
			break;
		SftCheckNotOwnTransaction(&p, "sft_wait()");

		now = GetCurrentTimestamp();
		if (p.phase != SFT_PHASE_STARTING &&
			TimestampDifferenceExceeds(last_notice, now, SFT_WAIT_NOTICE_MS))
		{
			SftReportProgress(&p);
			last_notice = now;
		}
		if (timeout_ms >= 0)
		{
			long		waited = (long) ((now - start) / 1000);

			if (waited >= timeout_ms)
			{
				SftProgressSleepDone();
				PG_RETURN_TEXT_P(cstring_to_text(SftRunVisibleStatus(&row)));
			}
			sleep_ms = Min(sleep_ms, timeout_ms - waited);
		}
		if (last_notice != 0)
			sleep_ms = Min(sleep_ms, SFT_WAIT_NOTICE_MS - (long) ((now - last_notice) / 1000));
		SftProgressSleep(slot, Max(sleep_ms, 1));
		CHECK_FOR_INTERRUPTS();
		/* The row's status moves from queued to running: refresh for a timeout return. */
		if (p.phase != SFT_PHASE_STARTING)
			row.status = "running";
	}
	SftProgressSleepDone();

	SftRunFetchOrError(run_id, &row, false);
	if (strcmp(row.status, "failed") == 0)
		ereport(WARNING,
				(errmsg("training run failed: %s",
						row.error ? row.error : "no message")));
	PG_RETURN_TEXT_P(cstring_to_text(SftRunVisibleStatus(&row)));
}

Datum
sft_cancel(PG_FUNCTION_ARGS)
{
	int64		run_id;
	SftRunRow	row;
	int			slot;
	SftRunProgress p;

	SftArgNotNull(fcinfo, 0, "run");
	run_id = PG_GETARG_INT64(0);
	SftRunFetchOrError(run_id, &row, false);
	SftCheckOwnership(row.owner, "training run", psprintf("%lld", (long long) run_id), "cancel");
	if (!row.active || !SftProgressRequestCancel(run_id, MyDatabaseId))
		PG_RETURN_BOOL(false);

	/*
	 * Wait until the worker has recorded the cancellation and gone, so the
	 * caller sees "cancelled" right after.  A worker waiting for this very
	 * transaction (which queued the run) cannot record anything before it
	 * commits: then the flag is all we can leave.
	 */
	for (;;)
	{
		slot = SftProgressFind(run_id, MyDatabaseId);
		if (slot < 0 || !SftProgressRead(slot, run_id, MyDatabaseId, &p))
			break;
		if (p.phase == SFT_PHASE_STARTING && TransactionIdIsValid(p.creator_xid) &&
			TransactionIdIsCurrentTransactionId(p.creator_xid))
			break;
		SftProgressSleep(slot, 1000);
		CHECK_FOR_INTERRUPTS();
	}
	SftProgressSleepDone();
	PG_RETURN_BOOL(true);
}

/* ---------------------------------------------------------------------------
 * sft_resume, sft_run_drop
 * ------------------------------------------------------------------------- */

Datum
sft_resume(PG_FUNCTION_ARGS)
{
	int64		run_id;
	SftRunRow	row;
	const char *status;

	SftArgNotNull(fcinfo, 0, "run");
	run_id = PG_GETARG_INT64(0);
	SftProgressRequireShmem();
	SftRunFetchOrError(run_id, &row, true);
	SftCheckOwnership(row.owner, "training run", psprintf("%lld", (long long) run_id), "resume");
	status = SftRunVisibleStatus(&row);
	if (row.active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("training run %lld is still active", (long long) run_id)));
	if (strcmp(status, "succeeded") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("training run %lld has already succeeded", (long long) run_id)));
	SftModelCheckNameFree(row.output, run_id);

	SftCatalogRunRequeue(run_id);

	SftStartWorker(run_id, row.owner, true);
	PG_RETURN_INT64(run_id);
}

Datum
sft_run_drop(PG_FUNCTION_ARGS)
{
	int64		run_id;
	SftRunRow	row;
	List	   *checkpoints;
	ListCell   *lc;

	SftArgNotNull(fcinfo, 0, "run");
	run_id = PG_GETARG_INT64(0);
	SftRunFetchOrError(run_id, &row, true);
	SftCheckOwnership(row.owner, "training run", psprintf("%lld", (long long) run_id), "drop");
	if (row.active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("training run %lld is still active", (long long) run_id),
				 errhint("Stop it first with sft_cancel(%lld).", (long long) run_id)));

	checkpoints = SftCatalogRunCheckpoints(run_id);
	SftCatalogRunDelete(run_id);
	/* As the caller: lo_unlink checks that the caller owns them (or is superuser). */
	foreach(lc, checkpoints)
		SftLoUnlink(lfirst_oid(lc));
	PG_RETURN_BOOL(true);
}

/* ---------------------------------------------------------------------------
 * Progress view
 * ------------------------------------------------------------------------- */

Datum
sft_run_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(SftProgressIsActive(PG_GETARG_INT64(0), MyDatabaseId));
}

Datum
sft_progress_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < SFT_MAX_RUN_SLOTS; i++)
	{
		SftRunProgress p;
		Datum		values[16];
		bool		nulls[16] = {0};

		if (!SftProgressRead(i, 0, MyDatabaseId, &p))
			continue;
		values[0] = Int64GetDatum(p.run_id);
		values[1] = Int32GetDatum(p.pid);
		nulls[1] = p.pid == 0;
		values[2] = CStringGetTextDatum(SftRunPhaseName(p.phase));
		values[3] = Int32GetDatum(p.epoch);
		values[4] = Int32GetDatum(p.epochs);
		values[5] = Int64GetDatum(p.step);
		values[6] = Int64GetDatum(p.steps);
		values[7] = Int64GetDatum(p.rows_read);
		values[8] = Float8GetDatum(p.loss);
		values[9] = Float8GetDatum(p.lr);
		values[10] = Float8GetDatum(p.grad_norm);
		values[11] = Float8GetDatum(p.tokens_per_s);
		if (p.eta_seconds >= 0)
		{
			Interval   *eta = palloc0(sizeof(Interval));

			eta->time = (int64) (p.eta_seconds * USECS_PER_SEC);
			values[12] = IntervalPGetDatum(eta);
		}
		else
			nulls[12] = true;
		values[13] = TimestampTzGetDatum(p.started);
		values[14] = TimestampTzGetDatum(p.updated);
		values[15] = BoolGetDatum(p.cancel_requested);
		if (p.phase == SFT_PHASE_STARTING || p.phase == SFT_PHASE_LOADING)
			nulls[8] = nulls[9] = nulls[10] = nulls[11] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
