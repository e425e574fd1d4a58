/*
 * generate.c: text from a model, from SQL.
 *
 *   sft_generate(model, messages jsonb | prompt text, max_new_tokens, temperature,
 *                top_k, top_p, seed, stop)              -> text
 *   sft_generate_stream(... the same ...)               -> setof text
 *   sft_generate_raw(model, prompt text, ...)           -> text  (no chat template)
 *   sft_generate_tokens(model, input_ids int[], ...)    -> int[] (token level)
 *
 * How a reply is made.  The conversation is rendered with the model's
 * tokenizer template plus the generation prompt ("<|im_start|>assistant\n")
 * and encoded exactly as training encodes it; the prompt goes through the
 * KV-cached decoder in one prefill, then tokens are sampled one at a time
 * (greedy at temperature 0, else temperature / top-k / top-p with a seeded
 * generator), each fed back into the decoder.  Generation ends at the
 * template's end-of-turn token or the end-of-sequence token (neither is part
 * of the text), at the first stop string (the text ends just before it), at
 * max_new_tokens, or when prompt + reply fill the model's context (with a
 * NOTICE).
 *
 * Text, piece by piece.  Tokens do not map to text one by one: a character
 * can span several byte tokens, and SentencePiece decoders strip the leading
 * space of the first token.  So the text is built by incremental
 * detokenization over a short window: the window ids[prefix_off..n) is
 * decoded and compared with the decoding of ids[prefix_off..read_off); what
 * the new tokens add is committed once it does not end in an incomplete
 * UTF-8 sequence (the decoder shows those as U+FFFD), then the window moves
 * on.  Every committed byte is valid UTF-8 (NUL, which text cannot hold,
 * becomes U+FFFD).  A piece is handed out as soon as it is committed, except
 * for a tail that could still become the start of a stop string.  The
 * streaming function returns those pieces as rows; sft_generate returns their
 * concatenation, made by the same code, so both always agree.
 *
 * Tokens the tokenizer cannot decode (ids of a model vocabulary larger than
 * the tokenizer's) are never sampled by the text functions;
 * sft_generate_tokens, which returns ids, samples from the whole vocabulary.
 *
 * Resources.  The model comes from the per-backend cache (model_cache.c) as
 * a lease that lives in the generator's memory context; deleting that context
 * (at the end of the call, at the end of a streaming scan, or on error) gives
 * the model and the decoder back.  Core buffers used while decoding text are
 * freed before any error is raised.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "conversation.h"
#include "core/chat_template.h"
#include "core/tokenizer.h"
#include "model_cache.h"
#include "sft.h"
#include "tokenizer.h"

PG_FUNCTION_INFO_V1(sft_generate);
PG_FUNCTION_INFO_V1(sft_generate_text);
PG_FUNCTION_INFO_V1(sft_generate_raw);
PG_FUNCTION_INFO_V1(sft_generate_stream);
PG_FUNCTION_INFO_V1(sft_generate_stream_text);
PG_FUNCTION_INFO_V1(sft_generate_tokens);
PG_FUNCTION_INFO_V1(sft_generate_batch);

/* Prompt tokens per decoder call: the decoder's own chunk (128) times 4, so
 * interrupts are checked during a long prefill without changing its math. */
#define SFT_PREFILL_STEP 512

#define SFT_MAX_STOP_STRINGS 64

/* Sequences decoded together at most: sft_decoder_step_batch's limit. */
#define SFT_BATCH_MAX 128
#define SFT_UTF8_REPLACEMENT "\xEF\xBF\xBD"

typedef enum SftPromptKind
{
	SFT_PROMPT_MESSAGES = 0,	/* jsonb conversation, chat template */
	SFT_PROMPT_TEXT,			/* text as one user message, chat template */
	SFT_PROMPT_RAW,				/* text encoded as is, no template */
	SFT_PROMPT_TOKENS			/* int[] ids, result is int[] */
} SftPromptKind;

typedef enum SftFinish
{
	SFT_FINISH_NONE = 0,
	SFT_FINISH_END_TOKEN,		/* end-of-turn or end-of-sequence sampled */
	SFT_FINISH_STOP_STRING,
	SFT_FINISH_MAX_TOKENS,
	SFT_FINISH_CONTEXT			/* prompt + reply fill max_position_embeddings */
} SftFinish;

#define SFT_MAX_END_IDS 3

typedef struct SftGenerator
{
	MemoryContext cxt;			/* the generator, its lease and its text */
	MemoryContext step_cxt;		/* per token, reset before each */
	char	   *model_name;
	SftModelLease *lease;

	/* the tokenizer entry is looked up again on every call of a streaming scan */
	char	   *tokenizer_name;
	const SftTokenizerEntry *tok_entry;
	TransactionId tok_xmin;
	ItemPointerData tok_tid;

	SftDecoder *decoder;
	int			V;				/* model vocabulary */
	int			max_position;
	float	   *logits;			/* [V] next-token logits after what was fed */
	void	   *sampler_scratch;	/* sft_sample_scratch_bytes(V) */
	SftSamplerConfig sampler;
	SftRng		rng;
	int32	   *undecodable;	/* [n_undecodable] ids masked out for text */
	int			n_undecodable;
	int32		end_ids[SFT_MAX_END_IDS];
	int			n_end_ids;

	int			prompt_len;
	int32	   *ids;			/* [max_new_tokens] generated ids */
	int			n_ids;
	int			max_new_tokens;
	bool		pending_feed;	/* ids[n_ids - 1] is not in the decoder yet */
	bool		want_text;

	/* incremental detokenization (see the top of the file) */
	int			prefix_off;
	int			read_off;
	StringInfoData text;		/* committed text: valid UTF-8, no NUL */
	size_t		emitted;		/* bytes of text handed out */

	int			n_stop;
	char	  **stop;			/* [n_stop] */
	int		   *stop_len;		/* [n_stop] bytes, >= 1 */

	SftFinish	finish;
	bool		done;			/* the last piece was handed out */

	SftTemplateCall template_call;	/* template_kwargs and strftime_now's clock */
} SftGenerator;

/* ---------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------- */

/* Argument positions, shared by every function of this file. */
#define ARG_MODEL 0
#define ARG_PROMPT 1
#define ARG_MAX_NEW_TOKENS 2
#define ARG_TEMPERATURE 3
#define ARG_TOP_K 4
#define ARG_TOP_P 5
#define ARG_SEED 6
#define ARG_STOP 7
#define ARG_TEMPLATE_KWARGS 8	/* the functions that render a chat template */

/* template_kwargs (NULL: none) and sft.template_now of a call that renders */
static void
SftTemplateCallArgs(FunctionCallInfo fcinfo, SftTemplateCall *call)
{
	Jsonb	   *kwargs = PG_NARGS() > ARG_TEMPLATE_KWARGS && !PG_ARGISNULL(ARG_TEMPLATE_KWARGS) ?
		PG_GETARG_JSONB_P(ARG_TEMPLATE_KWARGS) : NULL;

	SftTemplateCallMake(call, kwargs, NULL);
}

static void
SftCheckNotNull(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/* Sampling settings; the ranges are Hugging Face generate()'s. */
static void
SftParseSampling(FunctionCallInfo fcinfo, SftGenerator *gen, uint64 seed_offset)
{
	double		temperature;
	int			top_k;
	double		top_p;
	uint64		seed;

	SftCheckNotNull(fcinfo, ARG_TEMPERATURE, "temperature");
	SftCheckNotNull(fcinfo, ARG_TOP_K, "top_k");
	SftCheckNotNull(fcinfo, ARG_TOP_P, "top_p");
	temperature = PG_GETARG_FLOAT8(ARG_TEMPERATURE);
	top_k = PG_GETARG_INT32(ARG_TOP_K);
	top_p = PG_GETARG_FLOAT8(ARG_TOP_P);
	if (!(temperature >= 0.0) || isinf(temperature))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("temperature must be a finite number >= 0, not %g", temperature),
				 errhint("0 means greedy decoding.")));
	if (top_k < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top_k must be >= 0, not %d", top_k),
				 errhint("0 turns top-k filtering off.")));
	if (!(top_p > 0.0 && top_p <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top_p must be in (0, 1], not %g", top_p),
				 errhint("1 turns nucleus filtering off.")));
	gen->sampler.temperature = temperature;
	gen->sampler.top_k = top_k;
	gen->sampler.top_p = top_p;

	if (!PG_ARGISNULL(ARG_SEED))
		seed = (uint64) PG_GETARG_INT64(ARG_SEED) + seed_offset;
	else if (!pg_strong_random(&seed, sizeof(seed)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random seed")));
	sft_rng_seed(&gen->rng, seed);
}

static void
SftParseStopStrings(FunctionCallInfo fcinfo, SftGenerator *gen)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (PG_ARGISNULL(ARG_STOP))
		return;
	arr = PG_GETARG_ARRAYTYPE_P(ARG_STOP);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > SFT_MAX_STOP_STRINGS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("at most %d stop strings are supported, got %d", SFT_MAX_STOP_STRINGS, n)));
	gen->stop = palloc(sizeof(char *) * Max(n, 1));
	gen->stop_len = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("stop string %d is NULL", i + 1)));
		gen->stop[i] = TextDatumGetCString(elems[i]);
		gen->stop_len[i] = strlen(gen->stop[i]);
		if (gen->stop_len[i] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stop string %d is empty", i + 1)));
	}
	gen->n_stop = n;
}

/* ---------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------- */

/* Append s, each invalid byte and each NUL replaced by U+FFFD. */
static void
SftAppendValidUtf8(StringInfo out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0,
				run = 0;

	while (i < len)
	{
		int			l;

		if (p[i] >= 0x01 && p[i] < 0x80)
		{
			i++;
			continue;
		}
		l = p[i] == 0 ? 0 : pg_utf_mblen(p + i);
		if (l > 1 && i + l <= len && pg_utf8_islegal(p + i, l))
		{
			i += l;
			continue;
		}
		appendBinaryStringInfo(out, s + run, i - run);
		appendBinaryStringInfo(out, SFT_UTF8_REPLACEMENT, 3);
		i++;
		run = i;
	}
	appendBinaryStringInfo(out, s + run, len - run);
}

/*
 * Could more tokens still change how s ends?  True when it ends with the
 * start of a multi-byte sequence or with U+FFFD, which the tokenizer's
 * decoder writes for a sequence it has not seen the end of.
 */
static bool
SftUtf8EndsOpen(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = len;
	int			continuation = 0;

	if (len >= 3 && memcmp(s + len - 3, SFT_UTF8_REPLACEMENT, 3) == 0)
		return true;
	while (i > 0 && continuation < 3 && (p[i - 1] & 0xC0) == 0x80)
	{
		i--;
		continuation++;
	}
	if (i == 0 || p[i - 1] < 0xC0)
		return false;
	return pg_utf_mblen(p + i - 1) > continuation + 1;
}

/* ---------------------------------------------------------------------------
 * Tokens to text
 * ------------------------------------------------------------------------- */

/* Decode ids (special tokens skipped) into out; no core memory survives an error. */
static void
SftDecodeIds(const SftTokenizer *tok, const int32 *ids, int n, StringInfo out)
{
	SftBuf		buf;
	SftError	err = {0};
	SftStatus	st;

	if (n <= 0)
		return;
	sft_buf_init(&buf);
	st = sft_tokenizer_decode(tok, ids, n, 1, &buf, &err);
	PG_TRY();
	{
		if (st == SFT_OK && buf.len > 0)
			appendBinaryStringInfo(out, buf.data, buf.len);
	}
	PG_FINALLY();
	{
		sft_buf_free(&buf);
	}
	PG_END_TRY();
	if (st != SFT_OK)
		SftReportCoreError(&err, "decoding generated tokens");
}

/*
 * Commit the text the tokens since read_off add, unless it may still change
 * (not final).  Returns the length text had before.
 */
static size_t
SftCommitText(SftGenerator *gen, bool final)
{
	const SftTokenizer *tok = gen->tok_entry->tok;
	StringInfoData prefix,
				full;
	size_t		before = gen->text.len;
	size_t		common;

	if (gen->read_off == gen->n_ids)
		return before;
	initStringInfo(&prefix);
	initStringInfo(&full);
	SftDecodeIds(tok, gen->ids + gen->prefix_off, gen->read_off - gen->prefix_off, &prefix);
	SftDecodeIds(tok, gen->ids + gen->prefix_off, gen->n_ids - gen->prefix_off, &full);
	common = prefix.len;
	if (full.len < prefix.len || memcmp(full.data, prefix.data, prefix.len) != 0)
	{
		/* the new tokens rewrote earlier text: wait for more, or keep what still agrees */
		if (!final)
			return before;
		common = 0;
		while (common < prefix.len && common < full.len && full.data[common] == prefix.data[common])
			common++;
	}
	if (!final && (full.len == common || SftUtf8EndsOpen(full.data, full.len)))
		return before;
	SftAppendValidUtf8(&gen->text, full.data + common, full.len - common);
	gen->prefix_off = gen->read_off;
	gen->read_off = gen->n_ids;
	return before;
}

/* Cut the text before the first stop string that ends after offset from. */
static bool
SftCutAtStopString(SftGenerator *gen, size_t from)
{
	size_t		cut = gen->text.len + 1;

	for (int s = 0; s < gen->n_stop; s++)
	{
		size_t		L = gen->stop_len[s];
		size_t		start = from >= L ? from - L + 1 : 0;

		for (size_t i = start; i + L <= gen->text.len && i < cut; i++)
			if (gen->text.data[i] == gen->stop[s][0] &&
				memcmp(gen->text.data + i, gen->stop[s], L) == 0)
			{
				cut = i;
				break;
			}
	}
	if (cut > gen->text.len)
		return false;
	gen->text.len = cut;
	gen->text.data[cut] = '\0';
	return true;
}

/* Bytes at the end of the text that could be the start of a stop string. */
static size_t
SftStopHoldback(const SftGenerator *gen)
{
	size_t		hold = 0;

	for (int s = 0; s < gen->n_stop; s++)
	{
		size_t		k = Min((size_t) gen->stop_len[s] - 1, gen->text.len);

		for (; k > hold; k--)
			if (memcmp(gen->text.data + gen->text.len - k, gen->stop[s], k) == 0)
			{
				hold = k;
				break;
			}
	}
	return hold;
}

/* The next piece of text ready to hand out, if any. */
static bool
SftTakePiece(SftGenerator *gen, const char **piece, size_t *len, bool final)
{
	size_t		end = gen->text.len - (final ? 0 : SftStopHoldback(gen));

	if (end <= gen->emitted)
		return false;
	*piece = gen->text.data + gen->emitted;
	*len = end - gen->emitted;
	gen->emitted = end;
	return true;
}

/* ---------------------------------------------------------------------------
 * Setting up
 * ------------------------------------------------------------------------- */

/* The tokenizer entry, looked up again: a streaming scan spans many calls. */
static void
SftRefreshTokenizer(SftGenerator *gen)
{
	const SftTokenizerEntry *entry = SftTokenizerLookup(gen->tokenizer_name);

	if (gen->tok_entry != NULL &&
		(!TransactionIdEquals(entry->row_xmin, gen->tok_xmin) ||
		 !ItemPointerEquals((ItemPointer) &entry->row_tid, &gen->tok_tid)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tokenizer \"%s\" changed during generation", gen->tokenizer_name)));
	gen->tok_entry = entry;
	gen->tok_xmin = entry->row_xmin;
	gen->tok_tid = entry->row_tid;
}

/* Core ids (SftIntVec, freed here) into a palloc'd array. */
static int32 *
SftTakeIds(SftIntVec *vec, int *n)
{
	int32	   *ids = palloc_extended(sizeof(int32) * Max(vec->len, 1),
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);

	if (ids == NULL)
	{
		sft_intvec_free(vec);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for %zu prompt tokens", vec->len)));
	}
	if (vec->len > 0)
		memcpy(ids, vec->data, sizeof(int32) * vec->len);
	*n = (int) vec->len;
	sft_intvec_free(vec);
	return ids;
}

/*
 * A text prompt that is itself a JSON conversation most likely reached the
 * text overload by accident: an uncast literal resolves to text, not jsonb.
 * Answering the JSON as if it were a question would be silently wrong.
 */
static void
SftRejectConversationText(const char *prompt, size_t len)
{
	JsonLexContext *lex;
	Jsonb	   *jb;
	char	   *problem = NULL;
	size_t		i = 0;

	while (i < len && isspace((unsigned char) prompt[i]))
		i++;
	if (i == len || prompt[i] != '[')
		return;
	lex = makeJsonLexContextCstringLen((char *) prompt, (int) len, PG_UTF8, false);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(prompt, len))));
	if (SftConversationTryFromJsonb(jb, SFT_CONV_ANY, &problem) == NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("prompt is a JSON conversation, passed as text"),
			 errdetail("The text form of sft_generate takes the prompt as one user message."),
			 errhint("Cast it to jsonb ('[...]'::jsonb) or pass it as messages => '[...]'.")));
}

/* Prompt ids of the kind of call; palloc'd. */
static int32 *
SftEncodePrompt(Datum prompt, SftPromptKind kind, SftGenerator *gen, int *n)
{
	const SftTokenizerEntry *entry = gen->tok_entry;
	SftError	err = {0};

	if (kind == SFT_PROMPT_MESSAGES || kind == SFT_PROMPT_TEXT)
	{
		SftChatTemplate tpl = *SftTokenizerApplyCall(entry, &gen->template_call);
		SftConversation *conv;
		SftEncoded	enc;
		SftStatus	st;

		if (kind == SFT_PROMPT_MESSAGES)
			conv = SftConversationFromJsonb(DatumGetJsonbP(prompt), SFT_CONV_GENERATION);
		else
		{
			text	   *t = DatumGetTextPP(prompt);

			SftRejectConversationText(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			conv = palloc0(sizeof(SftConversation));
			conv->messages = palloc0(sizeof(SftMessage));
			conv->n = 1;
			conv->messages[0].role = SFT_ROLE_USER;
			conv->messages[0].content = VARDATA_ANY(t);
			conv->messages[0].len = VARSIZE_ANY_EXHDR(t);
			if (sft_conversation_check(conv, SFT_CONV_GENERATION, &err) != SFT_OK)
				SftReportCoreError(&err, "prompt");
		}
		/* the model's own system prompt comes before the template's default */
		if (gen->lease->system_prompt)
		{
			tpl.default_system = gen->lease->system_prompt;
			tpl.default_system_len = strlen(gen->lease->system_prompt);
		}
		sft_encoded_init(&enc);
		st = sft_chat_encode(&tpl, entry->tok, conv, SFT_TRAIN_ALL_ASSISTANT, 1, 0, &enc, &err);
		sft_intvec_free(&enc.mask);
		if (st != SFT_OK)
		{
			sft_encoded_free(&enc);
			SftReportCoreError(&err, "prompt");
		}
		return SftTakeIds(&enc.ids, n);
	}
	else if (kind == SFT_PROMPT_RAW)
	{
		text	   *t = DatumGetTextPP(prompt);
		SftIntVec	ids;

		/* the caller writes the whole context: special-token text is matched as such */
		sft_intvec_init(&ids);
		if (sft_tokenizer_encode(entry->tok, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 1,
								 &ids, NULL, &err) != SFT_OK)
		{
			sft_intvec_free(&ids);
			SftReportCoreError(&err, "prompt");
		}
		return SftTakeIds(&ids, n);
	}
	else
	{
		ArrayType  *arr = DatumGetArrayTypeP(prompt);
		Datum	   *elems;
		bool	   *nulls;
		int32	   *ids;
		int			count;

		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("input_ids must be a one-dimensional array")));
		deconstruct_array(arr, INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &count);
		ids = palloc(sizeof(int32) * Max(count, 1));
		for (int i = 0; i < count; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("input_ids[%d] is NULL", i + 1)));
			ids[i] = DatumGetInt32(elems[i]);
			if (ids[i] < 0 || ids[i] >= gen->V)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("input_ids[%d] = %d is outside the vocabulary of model \"%s\" (0..%d)",
								i + 1, ids[i], gen->model_name, gen->V - 1)));
		}
		*n = count;
		return ids;
	}
}

static void
SftAddEndId(SftGenerator *gen, int32 id)
{
	if (id < 0 || id >= gen->V)
		return;
	for (int i = 0; i < gen->n_end_ids; i++)
		if (gen->end_ids[i] == id)
			return;
	gen->end_ids[gen->n_end_ids++] = id;
}

/* Model ids the tokenizer has no token for: text generation never samples them. */
static void
SftFindUndecodable(SftGenerator *gen)
{
	const SftTokenizer *tok = gen->tok_entry->tok;
	int			n = 0;

	gen->undecodable = NULL;
	for (int id = 0; id < gen->V; id++)
	{
		size_t		len;

		if (sft_tokenizer_id_to_token(tok, id, &len) != NULL)
			continue;
		if (gen->undecodable == NULL)
			gen->undecodable = palloc(sizeof(int32) * (gen->V - id));
		gen->undecodable[n++] = id;
	}
	gen->n_undecodable = n;
}

/* Feed ids through the decoder; the logits of the last land in gen->logits. */
static void
SftFeed(SftGenerator *gen, const int32 *ids, int n)
{
	SftError	err = {0};

	for (int i = 0; i < n; i += SFT_PREFILL_STEP)
	{
		int			k = Min(n - i, SFT_PREFILL_STEP);

		CHECK_FOR_INTERRUPTS();
		if (sft_decoder_feed(gen->decoder, ids + i, k, i + k == n ? gen->logits : NULL,
							 &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("model \"%s\"", gen->model_name));
	}
}

/* "prompts[i]" in the context of an error in a batch's prompt */
static void
SftBatchErrorContext(void *arg)
{
	errcontext("prompts[%d]", *(int *) arg + 1);
}

/*
 * Check the arguments, lease the model, encode the prompt and run the
 * prefill.  Everything is allocated in a new child context of parent.
 * prompt is the call's prompt argument (batch_index -1), or element
 * batch_index (0-based) of a batch's, whose seed is the call's plus
 * batch_index.
 */
static SftGenerator *
SftGeneratorStart(FunctionCallInfo fcinfo, SftPromptKind kind, MemoryContext parent,
				  Datum prompt, int batch_index, const SftTemplateCall *call)
{
	MemoryContext cxt,
				old;
	SftGenerator *gen;
	int32	   *ids;
	int			max_new_tokens;
	int			min_seq;

	SftCheckUtf8Database();
	SftCheckNotNull(fcinfo, ARG_MODEL, "model");
	SftCheckNotNull(fcinfo, ARG_PROMPT,
					kind == SFT_PROMPT_MESSAGES ? "messages" :
					kind == SFT_PROMPT_TOKENS ? "input_ids" : "prompt");
	SftCheckNotNull(fcinfo, ARG_MAX_NEW_TOKENS, "max_new_tokens");
	max_new_tokens = PG_GETARG_INT32(ARG_MAX_NEW_TOKENS);
	if (max_new_tokens < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_new_tokens must be at least 1, not %d", max_new_tokens)));

	cxt = AllocSetContextCreate(parent, "sft generation", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	gen = palloc0(sizeof(SftGenerator));
	gen->cxt = cxt;
	gen->step_cxt = AllocSetContextCreate(cxt, "sft generation step", ALLOCSET_DEFAULT_SIZES);
	gen->want_text = kind != SFT_PROMPT_TOKENS;
	gen->max_new_tokens = max_new_tokens;
	SftParseSampling(fcinfo, gen, (uint64) Max(batch_index, 0));
	if (gen->want_text)
		SftParseStopStrings(fcinfo, gen);
	if (call)
		gen->template_call = *call;
	else if (kind == SFT_PROMPT_MESSAGES || kind == SFT_PROMPT_TEXT)
		SftTemplateCallArgs(fcinfo, &gen->template_call);
	gen->model_name = text_to_cstring(PG_GETARG_TEXT_PP(ARG_MODEL));

	gen->lease = SftModelLeaseAcquire(gen->model_name, cxt);
	gen->V = gen->lease->config->vocab_size;
	gen->max_position = gen->lease->config->max_position;
	if (max_new_tokens > gen->max_position)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_new_tokens %d is beyond the context of model \"%s\" (%d tokens)",
						max_new_tokens, gen->model_name, gen->max_position)));
	gen->tokenizer_name = pstrdup(gen->lease->tokenizer);
	SftRefreshTokenizer(gen);

	if (batch_index >= 0)
	{
		/* an error in a prompt of a batch names its element */
		ErrorContextCallback where = {.callback = SftBatchErrorContext,
		.arg = &batch_index,.previous = error_context_stack};

		error_context_stack = &where;
		ids = SftEncodePrompt(prompt, kind, gen, &gen->prompt_len);
		error_context_stack = where.previous;
	}
	else
		ids = SftEncodePrompt(prompt, kind, gen, &gen->prompt_len);
	if (gen->prompt_len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the prompt is empty: there is nothing to continue")));
	if (gen->prompt_len >= gen->max_position)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the prompt has %d tokens, which leaves no room in the context of model \"%s\" (%d tokens)",
						gen->prompt_len, gen->model_name, gen->max_position),
				 errhint("Shorten the conversation, e.g. with sft_truncate_turns().")));

	if (gen->tok_entry->has_template)
		SftAddEndId(gen, gen->tok_entry->end_of_turn_id);
	SftAddEndId(gen, gen->tok_entry->eos_id);
	SftAddEndId(gen, gen->lease->config->eos_token_id);
	if (gen->want_text)
		SftFindUndecodable(gen);

	gen->ids = palloc(sizeof(int32) * max_new_tokens);
	gen->logits = palloc(sizeof(float) * gen->V);
	gen->sampler_scratch = palloc(sft_sample_scratch_bytes(gen->V));
	initStringInfo(&gen->text);

	/* the decoder holds every token that is fed: all but the last one sampled */
	min_seq = Min(gen->prompt_len + max_new_tokens - 1, gen->max_position - 1);
	gen->decoder = SftModelLeaseDecoder(gen->lease, Max(min_seq, gen->prompt_len));
	SftFeed(gen, ids, gen->prompt_len);
	pfree(ids);
	MemoryContextSwitchTo(old);
	return gen;
}

/* ---------------------------------------------------------------------------
 * Generating
 * ------------------------------------------------------------------------- */

static bool
SftIsEndId(const SftGenerator *gen, int32 id)
{
	for (int i = 0; i < gen->n_end_ids; i++)
		if (gen->end_ids[i] == id)
			return true;
	return false;
}

/* Sample one id and decide whether generation goes on. */
static void
SftGenerateOne(SftGenerator *gen)
{
	int32		id;

	if (gen->pending_feed)
	{
		SftFeed(gen, gen->ids + gen->n_ids - 1, 1);
		gen->pending_feed = false;
	}
	for (int i = 0; i < gen->n_undecodable; i++)
		gen->logits[gen->undecodable[i]] = -INFINITY;
	id = sft_sample(gen->logits, gen->V, &gen->sampler, &gen->rng, gen->sampler_scratch);
	if (SftIsEndId(gen, id))
	{
		/* the token level result keeps the end token; text never shows it */
		if (!gen->want_text)
			gen->ids[gen->n_ids++] = id;
		gen->finish = SFT_FINISH_END_TOKEN;
		return;
	}
	gen->ids[gen->n_ids++] = id;
	if (gen->want_text)
	{
		size_t		before = SftCommitText(gen, false);

		if (gen->n_stop > 0 && SftCutAtStopString(gen, before))
		{
			gen->finish = SFT_FINISH_STOP_STRING;
			return;
		}
	}
	if (gen->n_ids == gen->max_new_tokens)
		gen->finish = SFT_FINISH_MAX_TOKENS;
	else if (gen->prompt_len + gen->n_ids >= gen->max_position)
		gen->finish = SFT_FINISH_CONTEXT;
	else
		gen->pending_feed = true;
}

/*
 * A finished generator (finish set): commit what was held back, unless a
 * stop string already cut it, and hand out the last piece; give the model
 * and decoder back.  Runs in gen->step_cxt.
 */
static bool
SftGeneratorEnd(SftGenerator *gen, const char **piece, size_t *len)
{
	bool		got = false;

	if (gen->want_text)
	{
		if (gen->finish != SFT_FINISH_STOP_STRING)
		{
			size_t		before;

			MemoryContextReset(gen->step_cxt);
			before = SftCommitText(gen, true);
			if (gen->n_stop > 0)
				SftCutAtStopString(gen, before);
		}
		got = SftTakePiece(gen, piece, len, true);
	}
	if (gen->finish == SFT_FINISH_CONTEXT)
		ereport(NOTICE,
				(errmsg("generation stopped after %d tokens: the context of model \"%s\" is full (%d tokens)",
						gen->n_ids, gen->model_name, gen->max_position)));
	gen->done = true;
	/* give the model and decoder back now; a scan may stay open for a while */
	SftModelLeaseRelease(gen->lease);
	return got;
}

/*
 * The next piece of text (pointing into gen->text, valid until the next
 * call); false once everything has been handed out.  Token-level generators
 * just run to the end and return false.
 */
static bool
SftGeneratorNext(SftGenerator *gen, const char **piece, size_t *len)
{
	MemoryContext old;
	bool		got = false;

	if (gen->done)
		return false;
	/* scratch of a step lives in step_cxt; gen->text grows in its own context */
	MemoryContextReset(gen->step_cxt);
	old = MemoryContextSwitchTo(gen->step_cxt);
	if (gen->want_text)
		SftRefreshTokenizer(gen);
	while (gen->finish == SFT_FINISH_NONE)
	{
		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(gen->step_cxt);
		SftGenerateOne(gen);
		if (gen->want_text && SftTakePiece(gen, piece, len, false))
		{
			MemoryContextSwitchTo(old);
			return true;
		}
	}

	got = SftGeneratorEnd(gen, piece, len);
	MemoryContextSwitchTo(old);
	return got;
}

/* ---------------------------------------------------------------------------
 * SQL functions
 * ------------------------------------------------------------------------- */

static Datum
SftGenerateAll(FunctionCallInfo fcinfo, SftPromptKind kind)
{
	SftGenerator *gen = SftGeneratorStart(fcinfo, kind, CurrentMemoryContext, PG_GETARG_DATUM(ARG_PROMPT), -1, NULL);
	const char *piece;
	size_t		len;
	text	   *result;

	while (SftGeneratorNext(gen, &piece, &len))
		;
	/* every piece was a slice of gen->text, handed out in order */
	result = cstring_to_text_with_len(gen->text.data, (int) gen->emitted);
	MemoryContextDelete(gen->cxt);
	PG_RETURN_TEXT_P(result);
}

Datum
sft_generate(PG_FUNCTION_ARGS)
{
	return SftGenerateAll(fcinfo, SFT_PROMPT_MESSAGES);
}

Datum
sft_generate_text(PG_FUNCTION_ARGS)
{
	return SftGenerateAll(fcinfo, SFT_PROMPT_TEXT);
}

Datum
sft_generate_raw(PG_FUNCTION_ARGS)
{
	return SftGenerateAll(fcinfo, SFT_PROMPT_RAW);
}

static Datum
SftGenerateStream(FunctionCallInfo fcinfo, SftPromptKind kind)
{
	FuncCallContext *funcctx;
	SftGenerator *gen;
	const char *piece;
	size_t		len;

	if (SRF_IS_FIRSTCALL())
	{
		funcctx = SRF_FIRSTCALL_INIT();
		funcctx->user_fctx = SftGeneratorStart(fcinfo, kind, funcctx->multi_call_memory_ctx,
												PG_GETARG_DATUM(ARG_PROMPT), -1, NULL);
	}
	funcctx = SRF_PERCALL_SETUP();
	gen = (SftGenerator *) funcctx->user_fctx;
	if (SftGeneratorNext(gen, &piece, &len))
		SRF_RETURN_NEXT(funcctx, PointerGetDatum(cstring_to_text_with_len(piece, (int) len)));
	SRF_RETURN_DONE(funcctx);
}

Datum
sft_generate_stream(PG_FUNCTION_ARGS)
{
	return SftGenerateStream(fcinfo, SFT_PROMPT_MESSAGES);
}

Datum
sft_generate_stream_text(PG_FUNCTION_ARGS)
{
	return SftGenerateStream(fcinfo, SFT_PROMPT_TEXT);
}

Datum
sft_generate_tokens(PG_FUNCTION_ARGS)
{
	SftGenerator *gen = SftGeneratorStart(fcinfo, SFT_PROMPT_TOKENS, CurrentMemoryContext,
											 PG_GETARG_DATUM(ARG_PROMPT), -1, NULL);
	const char *piece;
	size_t		len;
	Datum	   *elems;
	ArrayType  *result;

	while (SftGeneratorNext(gen, &piece, &len))
		;
	elems = palloc(sizeof(Datum) * Max(gen->n_ids, 1));
	for (int i = 0; i < gen->n_ids; i++)
		elems[i] = Int32GetDatum(gen->ids[i]);
	result = construct_array(elems, gen->n_ids, INT4OID, 4, true, TYPALIGN_INT);
	MemoryContextDelete(gen->cxt);
	PG_RETURN_ARRAYTYPE_P(result);
}

/* ---------------------------------------------------------------------------
 * sft_generate_batch(model, prompts jsonb[], ...) -> (ordinality, reply)
 * ------------------------------------------------------------------------- */

/*
 * Every prompt is a generator of its own (its own lease of the one cached
 * model, decoder, sampler, stop strings and text), started with the call's
 * seed plus its index; the generators that have room (sft.generate_batch_
 * memory) step together: each new token of all of them in one
 * sft_decoder_step_batch, which reads every weight once and gives each row
 * exactly its single-sequence logits, then each samples and commits text as
 * sft_generate does.  A finished sequence makes room for the next prompt.
 */
Datum
sft_generate_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr;
	Datum	   *prompts;
	bool	   *nulls;
	int			n;
	text	  **replies;
	SftGenerator **live;
	int		   *live_index;
	int			n_live = 0,
				started = 0,
				finished = 0,
				max_live = 1;
	SftDecoder **decs;
	int32	   *tokens;
	SftGenerator **fed;
	float	   *logits = NULL;
	SftTemplateCall call;
	MemoryContext cxt,
				old;

	SftCheckNotNull(fcinfo, ARG_MODEL, "model");
	SftCheckNotNull(fcinfo, ARG_PROMPT, "prompts");
	arr = PG_GETARG_ARRAYTYPE_P(ARG_PROMPT);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("prompts must be a one-dimensional array")));
	deconstruct_array(arr, JSONBOID, -1, false, TYPALIGN_INT, &prompts, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("prompts[%d] is NULL", i + 1),
					 errhint("Filter the rows: ARRAY(SELECT messages FROM ... WHERE messages IS NOT NULL ORDER BY ...).")));
	InitMaterializedSRF(fcinfo, 0);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_generate_batch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	replies = palloc0(sizeof(text *) * Max(n, 1));
	live = palloc(sizeof(SftGenerator *) * SFT_BATCH_MAX);
	live_index = palloc(sizeof(int) * SFT_BATCH_MAX);
	decs = palloc(sizeof(SftDecoder *) * SFT_BATCH_MAX);
	tokens = palloc(sizeof(int32) * SFT_BATCH_MAX);
	fed = palloc(sizeof(SftGenerator *) * SFT_BATCH_MAX);
	/* checked once, before any prompt is started; every prompt renders with it */
	SftTemplateCallArgs(fcinfo, &call);

	while (finished < n)
	{
		int			k = 0;

		/* start prompts while their KV caches fit */
		while (started < n && n_live < max_live)
		{
			SftGenerator *gen = SftGeneratorStart(fcinfo, SFT_PROMPT_MESSAGES, cxt,
												  prompts[started], started, &call);

			if (started == 0)
			{
				size_t		bytes = Max(SftModelLeaseDecoderBytes(gen->lease), 1);
				size_t		budget = (size_t) sft_generate_batch_memory_mb * 1024 * 1024;

				max_live = (int) Max(1, Min((size_t) SFT_BATCH_MAX, budget / bytes));
				logits = palloc(sizeof(float) * (size_t) gen->V * Min(max_live, n));
			}
			live[n_live] = gen;
			live_index[n_live++] = started++;
		}

		/* one batched step feeds every sequence its last sampled token */
		for (int i = 0; i < n_live; i++)
			if (live[i]->pending_feed)
			{
				fed[k] = live[i];
				decs[k] = live[i]->decoder;
				tokens[k++] = live[i]->ids[live[i]->n_ids - 1];
			}
		if (k > 0)
		{
			SftError	err = {0};

			CHECK_FOR_INTERRUPTS();
			if (sft_decoder_step_batch(decs, k, tokens, logits, &err) != SFT_OK)
				SftReportCoreError(&err, psprintf("model \"%s\"", fed[0]->model_name));
			for (int i = 0; i < k; i++)
			{
				memcpy(fed[i]->logits, logits + (size_t) i * fed[i]->V, sizeof(float) * fed[i]->V);
				fed[i]->pending_feed = false;
			}
		}

		/* each samples its next token, as sft_generate does */
		for (int i = 0; i < n_live; i++)
		{
			SftGenerator *gen = live[i];
			MemoryContext prev;

			MemoryContextReset(gen->step_cxt);
			prev = MemoryContextSwitchTo(gen->step_cxt);
			SftGenerateOne(gen);
			if (gen->finish != SFT_FINISH_NONE)
			{
				const char *piece;
				size_t		len;

				SftGeneratorEnd(gen, &piece, &len);
				MemoryContextSwitchTo(cxt);
				/* every piece is a slice of gen->text: the reply is what was handed out */
				replies[live_index[i]] = cstring_to_text_with_len(gen->text.data, (int) gen->emitted);
				MemoryContextDelete(gen->cxt);
				finished++;
				live[i] = live[n_live - 1];
				live_index[i] = live_index[n_live - 1];
				n_live--;
				i--;
				continue;
			}
			MemoryContextSwitchTo(prev);
		}
	}

	MemoryContextSwitchTo(old);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		isnull[2] = {false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = PointerGetDatum(replies[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	MemoryContextDelete(cxt);
	return (Datum) 0;
}
