# sft: supervised fine-tuning of small chat models inside PostgreSQL.
#
#   make deps     install the Debian packages the build and tests need (root)
#   make          build the extension           make install   install it
#   make test     unit tests + pg_regress + extra suites on a throwaway cluster
#   make demo     the main job end to end on a throwaway cluster
#   make bench    benchmarks, ours side by side with the references
#
# OPTFLAGS carries CPU-specific flags; `make OPTFLAGS=""` builds portable code.

EXTENSION = sft
MODULE_big = sft
DATA = sft--1.0.sql
PGFILEDESC = "sft - supervised fine-tuning of chat models in PostgreSQL"

# src/ is the PostgreSQL glue, src/core/ the pure-C core (never postgres.h).
GLUE_SRCS = $(sort $(wildcard src/*.c))
CORE_SRCS = $(sort $(wildcard src/core/*.c))
OBJS = $(GLUE_SRCS:.c=.o) $(CORE_SRCS:.c=.o)
CORE_OBJS = $(CORE_SRCS:.c=.o)

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=sft

OPTFLAGS ?= -march=native
DEP_CFLAGS := $(shell pkg-config --cflags json-c libpcre2-8 openblas 2>/dev/null)
DEP_LIBS := $(shell pkg-config --libs json-c libpcre2-8 openblas 2>/dev/null)
ifeq ($(strip $(DEP_LIBS)),)
DEP_CFLAGS := -I/usr/include/json-c -I/usr/include/x86_64-linux-gnu/openblas-pthread
DEP_LIBS := -ljson-c -lpcre2-8 -lopenblas
endif

PG_CPPFLAGS = -Isrc -Isrc/core $(DEP_CFLAGS)
PG_CFLAGS = -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-declaration-after-statement \
	-Wno-cast-function-type $(OPTFLAGS)
SHLIB_LINK = $(DEP_LIBS) -lm -lpthread

# The JIT bitcode PGXS would also build is of no use for this code.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The core kernels are hot loops: let the compiler vectorise them.
$(CORE_OBJS): CFLAGS += -O3

# Coarse but safe header dependencies: a changed header rebuilds its layer.
$(CORE_OBJS): $(wildcard src/core/*.h)
$(GLUE_SRCS:.c=.o): $(wildcard src/*.h src/core/*.h)

# ---------------------------------------------------------------------------
# Standalone programs over the core: unit tests, fuzz targets, benchmarks.
# ---------------------------------------------------------------------------
UNIT_SRCS = $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS = $(UNIT_SRCS:.c=)
BENCH_SRCS = $(sort $(wildcard test/bench/bench_*.c))
BENCH_BINS = $(BENCH_SRCS:.c=)
CORE_PROG_CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter \
	-Wno-sign-compare -Wno-format-truncation $(OPTFLAGS) -Isrc/core -Itest/unit $(DEP_CFLAGS)
CORE_PROG_LIBS = $(DEP_LIBS) -lm -lpthread

test/unit/test_%: test/unit/test_%.c $(CORE_OBJS) test/unit/tap.h
	$(CC) $(CORE_PROG_CFLAGS) -o $@ $< $(CORE_OBJS) $(CORE_PROG_LIBS)

test/bench/bench_%: test/bench/bench_%.c $(CORE_OBJS) test/bench/bench.h
	$(CC) $(CORE_PROG_CFLAGS) -O3 -o $@ $< $(CORE_OBJS) $(CORE_PROG_LIBS)

.PHONY: deps unit-tests test demo bench fuzz
unit-tests: $(UNIT_BINS)

deps:
	@sh test/deps.sh

test: all unit-tests
	@bash test/run_tests.sh

demo: deps all
	@bash test/run_demo.sh

bench: all $(BENCH_BINS)
	@bash test/run_bench.sh

# Builds every libFuzzer target (clang, ASan + UBSan) into /tmp/sft-fuzz and
# runs each for FUZZ_SECONDS, one after another.
FUZZ_SECONDS ?= 60
fuzz:
	@bash test/fuzz/run_all.sh $(FUZZ_SECONDS)

EXTRA_CLEAN = $(UNIT_BINS) $(BENCH_BINS) results regression.diffs regression.out
