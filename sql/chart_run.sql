-- sft_loss_chart(run): the chart of a run from its sft_run_log and
-- sft_run_epochs rows.  The rows are written here directly (as superuser) so
-- that the output is exact; the demo draws a real run.
INSERT INTO sft_run_table (id, owner, source, base, output, epochs, learning_rate, max_length,
                           batch_size, options, threads, max_memory_mb, tokenizer, status)
OVERRIDING SYSTEM VALUE
VALUES (1000001, current_user::regrole, 'public.mix', 'tiny', 'tiny-chat', 2, 1e-3, 512, 8, '{}', 1, 4096,
        'tiny', 'succeeded'),
       (1000002, current_user::regrole, 'public.mix', 'tiny', 'tiny-<new>', 2, 1e-3, 512, 8, '{}', 1, 4096,
        'tiny', 'running');
INSERT INTO sft_run_log (run_id, step, epoch, loss, learning_rate, grad_norm, tokens_per_s)
SELECT 1000001, s, 1 + (s > 10)::int, 5.0 / s + 0.5, 1e-3, 1.0, 1000.0
FROM generate_series(1, 20) s;
INSERT INTO sft_run_epochs (run_id, epoch, step, train_loss, validation_loss)
VALUES (1000001, 1, 10, 1.6, 1.4), (1000001, 2, 20, 0.8, 1.1);

\pset format unaligned
\pset tuples_only on
SELECT sft_loss_chart(1000001);
\pset format aligned
\pset tuples_only off

-- a run with nothing logged yet: an empty chart that says so
SELECT sft_loss_chart(1000002) ~ 'no loss logged yet' AS empty_chart,
       sft_loss_chart(1000002) ~ 'run 1000002: public.mix → tiny-&lt;new&gt;' AS escaped_title;
-- epochs without validation loss: markers, no validation legend
INSERT INTO sft_run_epochs (run_id, epoch, step, train_loss) VALUES (1000002, 1, 5, 2.0);
INSERT INTO sft_run_log (run_id, step, epoch, loss, learning_rate, grad_norm, tokens_per_s)
VALUES (1000002, 5, 1, 2.0, 1e-3, 1.0, 1000.0);
SELECT sft_loss_chart(1000002) ~ 'epoch 1' AS epoch_marker,
       sft_loss_chart(1000002) !~ 'validation loss' AS no_validation_legend,
       xml_is_well_formed_document(sft_loss_chart(1000002)) AS well_formed;
-- a sparkline of a run's recent loss, as a progress column would show it
SELECT sft_sparkline(ARRAY(SELECT loss FROM sft_run_log WHERE run_id = 1000001 ORDER BY step)) AS recent_loss;
-- errors
SELECT sft_loss_chart(-1);
SELECT sft_loss_chart(NULL::bigint) IS NULL AS null_run;

DELETE FROM sft_run_table WHERE id IN (1000001, 1000002);
