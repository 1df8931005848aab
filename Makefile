# llava.c build. `make` builds build/llava; `make test` builds and runs the tests (optimized and,
# with SAN=1, under AddressSanitizer + UBSan in build-asan/). Optional parts are probed and reported:
# OpenBLAS (CPU GEMMs; a plain C fallback otherwise) and CUDA (compiled when nvcc is present).
# Switch them off with NO_BLAS=1 / NO_CUDA=1.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-asan
OPTFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
OPTFLAGS = -O3 -march=x86-64-v2 -g
endif

CC ?= gcc
CFLAGS = $(OPTFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -fopenmp -Isrc
LDFLAGS = $(OPTFLAGS) -fopenmp
LIBS = -ljpeg -lpng -lwebp -lcjson -lmicrohttpd -lcurl -lz -lm -lpthread

# --- probe: OpenBLAS -------------------------------------------------------------------------
ifneq ($(NO_BLAS),1)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null)
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
endif
ifneq ($(strip $(BLAS_LIBS)),)
CFLAGS += -DLLAVA_OPENBLAS $(BLAS_CFLAGS)
LIBS += $(BLAS_LIBS)
$(info ✓ OpenBLAS found: CPU GEMMs use cblas_sgemm)
else
$(info ✗ OpenBLAS not found (apt-get install libopenblas-dev): CPU GEMMs use the plain C fallback)
endif

# --- probe: CUDA -------------------------------------------------------------------------------
NVCC ?= nvcc
ifneq ($(NO_CUDA),1)
HAVE_NVCC := $(shell command -v $(NVCC) 2>/dev/null)
endif
CU_SRC := $(shell find src -name '*.cu' 2>/dev/null)
ifneq ($(strip $(HAVE_NVCC)),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(HAVE_NVCC))
CFLAGS += -DLLAVA_CUDA
# Hopper gets sm_90a machine code (wgmma: attention_sm90.cu) instead of plain sm_90: cc 9.0 devices
# load it (there is no other 9.0 cubin to prefer), later chips JIT the compute_90 PTX.
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
             -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90a,code=sm_90a \
             -gencode arch=compute_90,code=compute_90
NVCCFLAGS = -O3 -std=c++17 $(CUDA_ARCH) -Isrc -DLLAVA_CUDA -Xcompiler -fPIC
LIBS += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart -lcublasLt -lcublas -lstdc++
CU_OBJ := $(patsubst src/%.cu,$(BUILD)/obj/%.cu.o,$(CU_SRC))
$(info ✓ nvcc found ($(HAVE_NVCC)): CUDA backend compiled for sm_80, sm_86, sm_89, sm_90a)
else
CU_OBJ :=
$(info ✗ nvcc not found: CUDA backend skipped)
endif

LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC := $(shell find src/cli -name '*.c' | sort)
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(CU_OBJ)
CLI_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all test test-asan check demo clean cuda-test
all: $(BUILD)/llava

$(BUILD)/libllava.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(BUILD)/llava: $(CLI_OBJ) $(BUILD)/libllava.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libllava.a $(LIBS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.cu.o: src/%.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libllava.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libllava.a $(LIBS)

# GPU tests (need a GPU to run; CI only builds them): every CUDA op against its CPU twin, and the
# whole model on the GPU against the transformers reference:
#   make cuda-test && build/tests/cuda_test_ops && build/tests/cuda_test_gpu_model
cuda-test: $(BUILD)/tests/cuda_test_ops $(BUILD)/tests/cuda_test_gpu_model

$(BUILD)/tests/cuda_test_gpu_model: tests/cuda/test_gpu_model.c tests/ref.h $(BUILD)/libllava.a
	@test -n "$(HAVE_NVCC)" || { echo "cuda-test needs nvcc (CUDA toolkit)"; exit 1; }
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libllava.a $(LIBS)

$(BUILD)/tests/cuda_test_ops: tests/cuda/test_ops.c $(BUILD)/libllava.a
	@test -n "$(HAVE_NVCC)" || { echo "cuda-test needs nvcc (CUDA toolkit)"; exit 1; }
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libllava.a $(LIBS)

# The test command of the README: optimized run, then the same tests under ASan+UBSan.
test: $(BUILD)/llava $(TEST_BIN)
	@bash tests/run_tests.sh $(BUILD)

test-asan:
	$(MAKE) SAN=1 NO_CUDA=1 test

# The README's test command: every test optimized and under ASan+UBSan, one summary line.
check:
	$(MAKE) BUILD=build build/llava $(patsubst tests/%.c,build/tests/%,$(TEST_SRC)) $(if $(HAVE_NVCC),cuda-test)
	$(MAKE) SAN=1 NO_CUDA=1 BUILD=build-asan build-asan/llava $(patsubst tests/%.c,build-asan/tests/%,$(TEST_SRC))
	@bash tests/run_tests.sh build build-asan

demo:
	bash scripts/demo.sh

print-libs:
	@echo $(LIBS)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
