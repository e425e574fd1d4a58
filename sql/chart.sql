-- Seeing training: sft_sparkline and the array form of sft_loss_chart.
-- (sft_loss_chart(run) over real run rows is in chart_run.sql.)

-- sparkline: one block per value, lowest ▁ to highest █
SELECT sft_sparkline('{1,2,3,4,5,6,7,8}');
SELECT sft_sparkline('{8,7,6,5,4,3,2,1}');
SELECT sft_sparkline('{5.5,3.1,2.2,1.4,1.1,0.9,0.8,0.75}');
SELECT sft_sparkline('{-3,0,3}');
SELECT sft_sparkline('{1e-12,2e-12,3e-12}');
SELECT sft_sparkline('{-1e300,1e300}');
-- flat, single, empty
SELECT sft_sparkline('{2,2,2}');
SELECT sft_sparkline('{7}');
SELECT sft_sparkline('{}') = '' AS empty;
-- gaps: NULL, NaN and infinities are spaces and do not stretch the scale
SELECT '[' || sft_sparkline('{1,NULL,3}') || ']' AS with_null;
SELECT '[' || sft_sparkline('{1,NaN,3,Infinity,-Infinity,2}') || ']' AS non_finite;
SELECT '[' || sft_sparkline('{NULL,NULL}') || ']' AS all_null;
-- one character per value, whatever the length
SELECT length(sft_sparkline(array(SELECT random() FROM generate_series(1, 1000)))) AS chars;
-- SQL NULL in, NULL out; integer arrays cast implicitly
SELECT sft_sparkline(NULL) IS NULL AS null_in;
SELECT sft_sparkline(ARRAY[3,1,2]);
-- errors
SELECT sft_sparkline('{{1,2},{3,4}}');

-- loss chart: a complete small document, byte for byte
\pset format unaligned
\pset tuples_only on
SELECT sft_loss_chart('{1,2,3,4}', '{4,2.5,1.5,1.2}', '{2,4}', '{2.8,1.9}', 'run 7: mix → tiny');
\pset format aligned
\pset tuples_only off
-- without validation (epoch markers only), without epochs, without data
SELECT sft_loss_chart('{1,2,3,4}', '{4,2.5,1.5,1.2}', '{2,4}') ~ 'epoch 2' AS epoch_marker,
       sft_loss_chart('{1,2,3,4}', '{4,2.5,1.5,1.2}', '{2,4}') !~ 'validation loss' AS no_validation_legend;
SELECT sft_loss_chart('{}', '{}') ~ 'no loss logged yet' AS empty_says_so;
SELECT sft_loss_chart('{}', '{}', '{1}', '{0.5}') ~ 'validation loss' AS validation_only;
-- the title is escaped; the default document title is used without one
SELECT sft_loss_chart('{1}', '{1}', NULL, NULL, '<b>&"x"</b>') ~ '&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;' AS escaped;
SELECT sft_loss_chart('{1}', '{1}') ~ '<title>training loss</title>' AS default_title;
-- well-formed XML, no scripts, for a range of awkward inputs
SELECT note, xml_is_well_formed_document(svg) AS well_formed, svg !~* '<script|javascript:|href' AS no_scripts,
       svg !~ 'nan|inf' AS finite_coordinates
FROM (VALUES
  ('one point',          sft_loss_chart('{1}', '{2.5}')),
  ('flat loss',          sft_loss_chart('{1,2,3}', '{1,1,1}')),
  ('zero loss',          sft_loss_chart('{1,2,3}', '{0,0,0}')),
  ('negative values',    sft_loss_chart('{-5,0,5}', '{-1,0,1}')),
  ('gaps',               sft_loss_chart('{1,2,NULL,4,5}', '{3,NaN,2,Infinity,1}', '{5}', '{NULL}')),
  ('tiny range',         sft_loss_chart('{1000000,1000001}', '{1.0000001,1.0000002}')),
  ('huge numbers',       sft_loss_chart('{1e15,1e15}', '{1e200,1e201}')),
  ('many steps',         sft_loss_chart(array(SELECT s::float8 FROM generate_series(1, 5000) s),
                                        array(SELECT 1.0 / s FROM generate_series(1, 5000) s))),
  ('control characters', sft_loss_chart('{1}', '{1}', NULL, NULL, E'a\x01b\tc'))
) t(note, svg);
-- errors: lengths that do not match, NULL data, 2-D arrays
SELECT sft_loss_chart('{1,2}', '{1}');
SELECT sft_loss_chart('{1,2}', '{1,2}', '{1,2}', '{1}');
SELECT sft_loss_chart('{1}', '{1}', NULL, '{1}');
SELECT sft_loss_chart(NULL, '{1}');
SELECT sft_loss_chart('{{1}}', '{{1}}');
