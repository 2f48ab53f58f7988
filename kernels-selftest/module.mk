# kernels-selftest/module.mk - build kiln-selftest (kselftest.cu) with nvcc.
#
#   make selftest SM=90            $(B)/selftest/kiln-selftest-sm90 (cubin sm_90 + PTX compute_90)
#   make selftest SM=80 PTX=0      $(B)/selftest/kiln-selftest-sm80-noptx (cubin only)
#   make selftest SM=100a          $(B)/selftest/kiln-selftest-sm100a (arch-specific)
#   make selftest SM=90 PLANT=1    $(B)/selftest/kiln-selftest-sm90-planted (a wrong kernel)
#
# Without nvcc (NVCC from the Makefile: PATH or /usr/local/cuda/bin) the
# target prints a SKIP line and succeeds, so machines without CUDA still build.
SM ?= 90
PTX ?= 1
PLANT ?= 0
SELFTEST_NVCCFLAGS ?= -O2 -std=c++17
SELFTEST_BIN := $(B)/selftest/kiln-selftest-sm$(SM)$(if $(filter 0,$(PTX)),-noptx)$(if $(filter 1,$(PLANT)),-planted)
SELFTEST_CODE := $(if $(filter 0,$(PTX)),sm_$(SM),[sm_$(SM),compute_$(SM)])
SELFTEST_FOR := sm_$(SM)$(if $(filter 0,$(PTX)),, + compute_$(SM) PTX)

.PHONY: selftest selftest-clean
ifeq ($(NVCC),)
selftest:
	@echo "SKIP: nvcc not found; kiln-selftest not built (install the CUDA toolkit)"
else
selftest: $(SELFTEST_BIN)

$(SELFTEST_BIN): kernels-selftest/kselftest.cu kernels-selftest/module.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(SELFTEST_NVCCFLAGS) -gencode 'arch=compute_$(SM),code=$(SELFTEST_CODE)' \
	  -DKILN_SELFTEST_BUILT_FOR='"$(SELFTEST_FOR)"' -DKILN_SELFTEST_PLANT_WRONG=$(PLANT) \
	  -o $@ $<
endif
