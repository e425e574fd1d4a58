/*
 * chart.c: seeing training.  Two renderers over plain arrays of numbers:
 *
 *   sft_sparkline(values float8[]) -> text
 *       one block character per value, ▁ (lowest) to █ (highest), scaled
 *       between the smallest and largest finite value; a gap (space) for
 *       NULL, NaN and infinities.  Compact enough for a column of
 *       sft_progress in psql.
 *
 *   sft_loss_chart(step float8[], loss float8[], epoch_step float8[],
 *                  validation_loss float8[], title text) -> text
 *       a self-contained SVG document (no scripts, no external fonts or
 *       styles) with train loss per logged step as a line, a dashed marker at
 *       the end of every epoch, and validation loss per epoch as points
 *       joined by a line.  A browser shows it as is; rsvg-convert turns it
 *       into a PNG.  sft_loss_chart(run bigint), in SQL, feeds it a run's
 *       sft_run_log and sft_run_epochs rows.
 *
 * Both are pure functions of their arguments (IMMUTABLE): the same arrays
 * always give the same bytes, which is what the regression tests compare.
 * Numbers are printed with "%.1f" / "%g"; the backend's LC_NUMERIC is always
 * "C", so the decimal separator is a dot.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(sft_sparkline);
PG_FUNCTION_INFO_V1(sft_loss_chart_arrays);

/* ---------------------------------------------------------------------------
 * float8[] -> C arrays
 * ------------------------------------------------------------------------- */

/*
 * A one-dimensional float8 array as values + "usable" flags (false for NULL
 * and non-finite elements).  argname names the argument in errors.
 */
typedef struct SeriesInput
{
	int			n;
	double	   *values;			/* [n] */
	bool	   *usable;			/* [n] finite and not NULL */
} SeriesInput;

static void
SeriesFromArray(ArrayType *array, const char *argname, SeriesInput *out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", argname),
				 errdetail("The array has %d dimensions.", ARR_NDIM(array))));
	deconstruct_array(array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	out->n = n;
	out->values = palloc(sizeof(double) * Max(n, 1));
	out->usable = palloc(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		out->values[i] = nulls[i] ? 0.0 : DatumGetFloat8(elems[i]);
		out->usable[i] = !nulls[i] && isfinite(out->values[i]);
	}
}

/* ---------------------------------------------------------------------------
 * sft_sparkline
 * ------------------------------------------------------------------------- */

/* U+2581 .. U+2588, lowest to highest, as UTF-8. */
static const char *const SPARK_BLOCKS[8] = {
	"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"
};

Datum
sft_sparkline(PG_FUNCTION_ARGS)
{
	SeriesInput s;
	StringInfoData out;
	double		lo = INFINITY,
				hi = -INFINITY;

	SeriesFromArray(PG_GETARG_ARRAYTYPE_P(0), "values", &s);
	for (int i = 0; i < s.n; i++)
	{
		if (!s.usable[i])
			continue;
		lo = Min(lo, s.values[i]);
		hi = Max(hi, s.values[i]);
	}
	initStringInfo(&out);
	for (int i = 0; i < s.n; i++)
	{
		int			level;

		if (!s.usable[i])
		{
			appendStringInfoChar(&out, ' ');
			continue;
		}
		/* a flat series sits in the middle rather than looking like zero */
		if (hi - lo <= 0.0 && hi / 2 - lo / 2 <= 0.0)
			level = 3;
		else if (isfinite(hi - lo))
			level = (int) lround((s.values[i] - lo) / (hi - lo) * 7.0);
		else					/* the span overflows: halve everything */
			level = (int) lround((s.values[i] / 2 - lo / 2) / (hi / 2 - lo / 2) * 7.0);
		appendStringInfoString(&out, SPARK_BLOCKS[Max(0, Min(7, level))]);
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* ---------------------------------------------------------------------------
 * SVG loss chart
 * ------------------------------------------------------------------------- */

/* Canvas and plot area, in SVG user units (pixels at 100%). */
#define CHART_WIDTH 720
#define CHART_HEIGHT 420
#define PLOT_LEFT 72
#define PLOT_RIGHT (CHART_WIDTH - 24)
#define PLOT_TOP 48
#define PLOT_BOTTOM (CHART_HEIGHT - 64)

#define COLOR_TRAIN "#1f77b4"
#define COLOR_VALIDATION "#e8590c"
#define COLOR_GRID "#e0e0e0"
#define COLOR_AXIS "#333333"
#define COLOR_EPOCH "#9e9e9e"

/* A linear map from data to the plot area, with its tick spacing. */
typedef struct Axis
{
	double		lo;				/* data value at the start of the axis */
	double		hi;				/* data value at the end of the axis */
	double		tick;			/* distance between labelled ticks */
	double		pix_lo;			/* pixel of lo */
	double		pix_hi;			/* pixel of hi */
} Axis;

/* 1, 2 or 5 times a power of ten, close to range / target_ticks. */
static double
NiceTick(double range, int target_ticks)
{
	double		rough = range / target_ticks;
	double		mag = pow(10.0, floor(log10(rough)));
	double		norm = rough / mag;

	if (norm < 1.5)
		return mag;
	if (norm < 3.0)
		return 2.0 * mag;
	if (norm < 7.0)
		return 5.0 * mag;
	return 10.0 * mag;
}

/*
 * Axis over [lo, hi] widened to whole ticks; a zero-width range (a single
 * point, a flat loss) is widened around the value so the line is visible.
 */
static void
AxisInit(Axis *axis, double lo, double hi, int target_ticks, double pix_lo, double pix_hi,
		 bool from_zero, bool integral)
{
	if (from_zero && lo > 0.0)
		lo = 0.0;
	if (hi - lo <= 0.0)
	{
		double		pad = fabs(lo) > 0.0 ? fabs(lo) * 0.1 : 1.0;

		lo -= pad;
		hi += pad;
		if (from_zero && lo < 0.0 && hi > 0.0)
			lo = 0.0;
	}
	axis->tick = NiceTick(hi - lo, target_ticks);
	/* optimizer steps are whole numbers: no tick at step 2.5 */
	if (integral && axis->tick < 1.0)
		axis->tick = 1.0;
	axis->lo = floor(lo / axis->tick) * axis->tick;
	axis->hi = ceil(hi / axis->tick) * axis->tick;
	axis->pix_lo = pix_lo;
	axis->pix_hi = pix_hi;
}

/*
 * Number of tick intervals on the axis, 0 when the range is not a sane
 * multiple of the tick (huge or non-finite inputs): then only the axis lines
 * are drawn.  Ticks are computed as lo + k * tick, never by repeated
 * addition, which could stall where tick is below the spacing of doubles.
 */
static int
AxisTickCount(const Axis *axis)
{
	double		n = (axis->hi - axis->lo) / axis->tick;

	if (!isfinite(n) || n < 0.0 || n > 100.0)
		return 0;
	return (int) lround(n);
}

static double
AxisPixel(const Axis *axis, double v)
{
	return axis->pix_lo + (v - axis->lo) / (axis->hi - axis->lo) * (axis->pix_hi - axis->pix_lo);
}

/* A tick label: %g after rounding away the float noise of lo + k * tick. */
static void
AppendTickLabel(StringInfo out, double v, double tick)
{
	if (fabs(v) < tick * 1e-9)
		v = 0.0;
	appendStringInfo(out, "%.6g", v);
}

static void
AppendXmlEscaped(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '<':
				appendStringInfoString(out, "&lt;");
				break;
			case '>':
				appendStringInfoString(out, "&gt;");
				break;
			case '&':
				appendStringInfoString(out, "&amp;");
				break;
			case '"':
				appendStringInfoString(out, "&quot;");
				break;
			default:
				/* control characters other than tab/newline are not XML */
				if ((unsigned char) *s < 0x20 && *s != '\t' && *s != '\n')
					appendStringInfoChar(out, ' ');
				else
					appendStringInfoChar(out, *s);
		}
	}
}

/*
 * A polyline through the usable (x, y) pairs; a NULL or non-finite point
 * breaks the line into separate pieces.
 */
static void
AppendPolyline(StringInfo out, const SeriesInput *x, const SeriesInput *y,
			   const Axis *ax, const Axis *ay, const char *style)
{
	bool		open = false;

	for (int i = 0; i < x->n; i++)
	{
		if (!x->usable[i] || !y->usable[i])
		{
			if (open)
				appendStringInfoString(out, "\"/>\n");
			open = false;
			continue;
		}
		if (!open)
			appendStringInfo(out, "<polyline %s points=\"", style);
		else
			appendStringInfoChar(out, ' ');
		appendStringInfo(out, "%.1f,%.1f", AxisPixel(ax, x->values[i]), AxisPixel(ay, y->values[i]));
		open = true;
	}
	if (open)
		appendStringInfoString(out, "\"/>\n");
}

static void
CheckSameLength(const SeriesInput *a, const char *aname, const SeriesInput *b, const char *bname)
{
	if (a->n != b->n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s and %s must have the same number of elements", aname, bname),
				 errdetail("%s has %d, %s has %d.", aname, a->n, bname, b->n)));
}

Datum
sft_loss_chart_arrays(PG_FUNCTION_ARGS)
{
	SeriesInput step,
				loss,
				epoch_step,
				val_loss;
	const char *title = NULL;
	StringInfoData out;
	Axis		ax,
				ay;
	double		xlo = INFINITY,
				xhi = -INFINITY,
				ylo = INFINITY,
				yhi = -INFINITY;
	int			n_train = 0,
				n_val = 0;
	bool		x_integral = true;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("step and loss must not be NULL"),
				 errhint("Pass empty arrays for a chart without train loss.")));
	SeriesFromArray(PG_GETARG_ARRAYTYPE_P(0), "step", &step);
	SeriesFromArray(PG_GETARG_ARRAYTYPE_P(1), "loss", &loss);
	CheckSameLength(&step, "step", &loss, "loss");
	if (PG_ARGISNULL(2))
		epoch_step.n = 0;
	else
		SeriesFromArray(PG_GETARG_ARRAYTYPE_P(2), "epoch_step", &epoch_step);
	if (PG_ARGISNULL(2) && !PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("validation_loss needs epoch_step"),
				 errdetail("Validation loss is drawn at the step where each epoch ended.")));
	if (PG_ARGISNULL(3))
	{
		/* no validation: epoch markers only */
		val_loss.n = epoch_step.n;
		val_loss.values = palloc0(sizeof(double) * Max(epoch_step.n, 1));
		val_loss.usable = palloc0(sizeof(bool) * Max(epoch_step.n, 1));
	}
	else
		SeriesFromArray(PG_GETARG_ARRAYTYPE_P(3), "validation_loss", &val_loss);
	CheckSameLength(&epoch_step, "epoch_step", &val_loss, "validation_loss");
	if (!PG_ARGISNULL(4))
		title = text_to_cstring(PG_GETARG_TEXT_PP(4));

	/* data ranges: x over every step and epoch end, y over every loss */
	for (int i = 0; i < step.n; i++)
	{
		if (!step.usable[i] || !loss.usable[i])
			continue;
		xlo = Min(xlo, step.values[i]);
		xhi = Max(xhi, step.values[i]);
		x_integral &= step.values[i] == floor(step.values[i]);
		ylo = Min(ylo, loss.values[i]);
		yhi = Max(yhi, loss.values[i]);
		n_train++;
	}
	for (int i = 0; i < epoch_step.n; i++)
	{
		if (!epoch_step.usable[i])
			continue;
		xlo = Min(xlo, epoch_step.values[i]);
		xhi = Max(xhi, epoch_step.values[i]);
		x_integral &= epoch_step.values[i] == floor(epoch_step.values[i]);
		if (!val_loss.usable[i])
			continue;
		ylo = Min(ylo, val_loss.values[i]);
		yhi = Max(yhi, val_loss.values[i]);
		n_val++;
	}
	if (!isfinite(xlo))
	{
		xlo = 0.0;
		xhi = 1.0;
	}
	if (!isfinite(ylo))
	{
		ylo = 0.0;
		yhi = 1.0;
	}
	AxisInit(&ax, xlo, xhi, 8, PLOT_LEFT, PLOT_RIGHT, true, x_integral);
	/* loss axis from zero: the eye reads the fall as a fraction of the start */
	AxisInit(&ay, ylo, yhi, 6, PLOT_BOTTOM, PLOT_TOP, true, false);

	initStringInfo(&out);
	appendStringInfo(&out,
					 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
					 "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
					 "font-size=\"12\">\n",
					 CHART_WIDTH, CHART_HEIGHT, CHART_WIDTH, CHART_HEIGHT);
	appendStringInfoString(&out, "<title>");
	AppendXmlEscaped(&out, title ? title : "training loss");
	appendStringInfoString(&out, "</title>\n");
	appendStringInfo(&out, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
					 CHART_WIDTH, CHART_HEIGHT);
	if (title)
	{
		appendStringInfo(&out, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">",
						 PLOT_LEFT);
		AppendXmlEscaped(&out, title);
		appendStringInfoString(&out, "</text>\n");
	}

	/* grid and tick labels */
	appendStringInfo(&out, "<g stroke=\"%s\" stroke-width=\"1\">\n", COLOR_GRID);
	for (int k = 0; k <= AxisTickCount(&ay); k++)
	{
		double		y = AxisPixel(&ay, ay.lo + k * ay.tick);

		appendStringInfo(&out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n",
						 PLOT_LEFT, y, PLOT_RIGHT, y);
	}
	for (int k = 0; k <= AxisTickCount(&ax); k++)
	{
		double		x = AxisPixel(&ax, ax.lo + k * ax.tick);

		appendStringInfo(&out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n",
						 x, PLOT_TOP, x, PLOT_BOTTOM);
	}
	appendStringInfoString(&out, "</g>\n");
	appendStringInfo(&out, "<g fill=\"%s\" text-anchor=\"end\">\n", COLOR_AXIS);
	for (int k = 0; k <= AxisTickCount(&ay); k++)
	{
		double		v = ay.lo + k * ay.tick;

		appendStringInfo(&out, "<text x=\"%d\" y=\"%.1f\">", PLOT_LEFT - 6, AxisPixel(&ay, v) + 4);
		AppendTickLabel(&out, v, ay.tick);
		appendStringInfoString(&out, "</text>\n");
	}
	appendStringInfoString(&out, "</g>\n");
	appendStringInfo(&out, "<g fill=\"%s\" text-anchor=\"middle\">\n", COLOR_AXIS);
	for (int k = 0; k <= AxisTickCount(&ax); k++)
	{
		double		v = ax.lo + k * ax.tick;

		appendStringInfo(&out, "<text x=\"%.1f\" y=\"%d\">", AxisPixel(&ax, v), PLOT_BOTTOM + 18);
		AppendTickLabel(&out, v, ax.tick);
		appendStringInfoString(&out, "</text>\n");
	}
	appendStringInfoString(&out, "</g>\n");

	/* axes and their labels */
	appendStringInfo(&out,
					 "<path d=\"M%d %d V%d H%d\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\"/>\n",
					 PLOT_LEFT, PLOT_TOP, PLOT_BOTTOM, PLOT_RIGHT, COLOR_AXIS);
	appendStringInfo(&out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">optimizer step</text>\n",
					 (PLOT_LEFT + PLOT_RIGHT) / 2, CHART_HEIGHT - 22, COLOR_AXIS);
	appendStringInfo(&out,
					 "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\" "
					 "transform=\"rotate(-90 18 %d)\">loss (mean per target token)</text>\n",
					 (PLOT_TOP + PLOT_BOTTOM) / 2, COLOR_AXIS, (PLOT_TOP + PLOT_BOTTOM) / 2);

	/* epoch ends: dashed verticals, labelled */
	for (int i = 0; i < epoch_step.n; i++)
	{
		double		x;

		if (!epoch_step.usable[i])
			continue;
		x = AxisPixel(&ax, epoch_step.values[i]);
		appendStringInfo(&out,
						 "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
						 "stroke-dasharray=\"4 3\"/>\n",
						 x, PLOT_TOP, x, PLOT_BOTTOM, COLOR_EPOCH);
		appendStringInfo(&out,
						 "<text x=\"%.1f\" y=\"%d\" text-anchor=\"end\" fill=\"%s\" font-size=\"10\">epoch %d</text>\n",
						 x - 3, PLOT_TOP + 12, COLOR_EPOCH, i + 1);
	}

	/* the series */
	AppendPolyline(&out, &step, &loss, &ax, &ay,
				   "fill=\"none\" stroke=\"" COLOR_TRAIN "\" stroke-width=\"1.5\" stroke-linejoin=\"round\"");
	AppendPolyline(&out, &epoch_step, &val_loss, &ax, &ay,
				   "fill=\"none\" stroke=\"" COLOR_VALIDATION "\" stroke-width=\"2\"");
	for (int i = 0; i < epoch_step.n; i++)
	{
		if (!epoch_step.usable[i] || !val_loss.usable[i])
			continue;
		appendStringInfo(&out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n",
						 AxisPixel(&ax, epoch_step.values[i]), AxisPixel(&ay, val_loss.values[i]),
						 COLOR_VALIDATION);
	}

	/* legend (or what is missing) in the header, right of the title */
	appendStringInfo(&out, "<g font-size=\"12\" fill=\"%s\">\n", COLOR_AXIS);
	if (n_train == 0 && n_val == 0)
		appendStringInfo(&out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no loss logged yet</text>\n",
						 (PLOT_LEFT + PLOT_RIGHT) / 2, (PLOT_TOP + PLOT_BOTTOM) / 2);
	else
	{
		int			y = PLOT_TOP - 10;
		int			x = PLOT_RIGHT - 100;	/* right-most entry first */

		if (n_val > 0)
		{
			appendStringInfo(&out,
							 "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>"
							 "<text x=\"%d\" y=\"%d\">validation loss</text>\n",
							 x + 6, y - 4, COLOR_VALIDATION, x + 14, y);
			x -= 100;
		}
		if (n_train > 0)
			appendStringInfo(&out,
							 "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
							 "<text x=\"%d\" y=\"%d\">train loss</text>\n",
							 x + 10, y - 4, x + 30, y - 4, COLOR_TRAIN, x + 36, y);
	}
	appendStringInfoString(&out, "</g>\n</svg>\n");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}
