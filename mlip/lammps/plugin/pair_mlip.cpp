/* pair_style mlip: a LAMMPS plugin evaluating a cartesian-irreps potential through a Python callable.

   Contract (the one of ML-IAP's unified interface): LAMMPS builds the full neighbour list of the local
   atoms; this pair style hands the pair vectors r_ij = x_j - x_i (|r_ij| < r_c), pair_i (local),
   pair_j (local or ghost) and the atom types/tags to a callback registered from Python with ctypes
   (no copies), and takes back the local atoms' energies E_i and per-pair f_ij = dE/dr_ij. Then
   F_i += f_ij, F_j -= f_ij; LAMMPS sends ghost forces back to their owners (newton on) and the virial
   is tallied per pair. Between message-passing layers the Python side exchanges node features through
   mlip_forward_comm / mlip_reverse_comm (LAMMPS forward/reverse communication of per-atom rows).

   Usage: plugin load <this .so>; pair_style mlip [name]; pair_coeff * * El_1 ... El_ntypes
   Build: mlip lammps build-plugin (see docs/lammps.md). */

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mlip_plugin_api.h"

using namespace LAMMPS_NS;

namespace {
struct Callbacks {
  mlip_setup_fn setup;
  mlip_compute_fn compute;
};
std::map<std::string, Callbacks> &registry()
{
  static std::map<std::string, Callbacks> models;
  return models;
}
}    // namespace

namespace LAMMPS_NS {

class PairMLIP : public Pair {
 public:
  explicit PairMLIP(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    no_virial_fdotr_compute = 1;
    centroidstressflag = CENTROID_NOTAVAIL;
  }

  ~PairMLIP() override
  {
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
    }
  }

  void settings(int narg, char **arg) override
  {
    if (narg > 1) error->all(FLERR, "Illegal pair_style mlip command: expected at most one model name");
    name = narg ? arg[0] : "default";
    if (registry().find(name) == registry().end())
      error->all(FLERR,
                 "pair_style mlip: no model registered under the name '{}'; attach one from Python with "
                 "mlip.lammps.attach(lmp, model, name='{}') (or run the input with `mlip lammps run`)",
                 name, name);
  }

  void coeff(int narg, char **arg) override
  {
    int ntypes = atom->ntypes;
    if (narg != 2 + ntypes)
      error->all(FLERR,
                 "pair_coeff for pair_style mlip needs '* *' and one element per atom type: {} types, "
                 "got {} elements",
                 ntypes, narg - 2);
    if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
      error->all(FLERR, "pair_coeff for pair_style mlip must start with '* *'");
    if (!allocated) allocate();
    std::vector<const char *> elements(ntypes);
    for (int t = 0; t < ntypes; t++) elements[t] = arg[2 + t];
    Callbacks &cb = registry().at(name);
    char err[1024] = {0};
    int width = 0;
    if (cb.setup(name.c_str(), ntypes, elements.data(), &cutoff, &width, err, sizeof(err)) != 0)
      error->all(FLERR, "pair_style mlip: {}", err);
    comm_forward = comm_reverse = width > 0 ? width : 1;
    for (int i = 1; i <= ntypes; i++)
      for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
  }

  void init_style() override
  {
    if (force->newton_pair == 0) error->all(FLERR, "pair_style mlip requires newton pair on");
    if (atom->tag_enable == 0) error->all(FLERR, "pair_style mlip requires atom IDs");
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }

  double init_one(int, int) override { return cutoff; }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    double **x = atom->x;
    double **f = atom->f;
    int nlocal = atom->nlocal;
    int nall = nlocal + atom->nghost;
    double cutsq_model = cutoff * cutoff;

    int inum = list->inum;
    int *ilist = list->ilist;
    int *numneigh = list->numneigh;
    int **firstneigh = list->firstneigh;
    std::size_t total = 0;
    for (int ii = 0; ii < inum; ii++) total += numneigh[ilist[ii]];
    pair_i.resize(total);
    pair_j.resize(total);
    rij.resize(3 * total);
    std::size_t n = 0;
    for (int ii = 0; ii < inum; ii++) {
      int i = ilist[ii];
      int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
        pair_i[n] = i;
        pair_j[n] = j;
        rij[3 * n] = dx;
        rij[3 * n + 1] = dy;
        rij[3 * n + 2] = dz;
        n++;
      }
    }
    fij.assign(3 * n, 0.0);
    energies.assign(nlocal, 0.0);

    char err[1024] = {0};
    Callbacks &cb = registry().at(name);
    int status = cb.compute(name.c_str(), this, nlocal, nall, (int) n, pair_i.data(), pair_j.data(), rij.data(),
                            atom->type, (const void *) atom->tag, (int) sizeof(tagint), nall ? x[0] : nullptr,
                            domain->h, energies.data(), fij.data(), err, sizeof(err));
    if (status != 0) error->one(FLERR, "pair_style mlip: {}", err);

    for (std::size_t p = 0; p < n; p++) {
      int i = pair_i[p], j = pair_j[p];
      double fx = fij[3 * p], fy = fij[3 * p + 1], fz = fij[3 * p + 2];
      f[i][0] += fx;
      f[i][1] += fy;
      f[i][2] += fz;
      f[j][0] -= fx;
      f[j][1] -= fy;
      f[j][2] -= fz;
      // force on i is +f_ij, x_i - x_j = -r_ij
      if (vflag_either)
        ev_tally_xyz(i, j, nlocal, 1, 0.0, 0.0, fx, fy, fz, -rij[3 * p], -rij[3 * p + 1], -rij[3 * p + 2]);
    }
    if (eflag_either) {
      for (int i = 0; i < nlocal; i++) {
        if (eflag_global) eng_vdwl += energies[i];
        if (eflag_atom) eatom[i] += energies[i];
      }
    }
  }

  // per-atom feature rows exchanged by mlip_forward_comm / mlip_reverse_comm, in chunks of comm_forward
  double *rows = nullptr;
  int row_width = 0, chunk_offset = 0, chunk_width = 0;

  int pack_forward_comm(int n, int *list, double *buf, int, int *) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      const double *src = rows + (std::size_t) list[k] * row_width + chunk_offset;
      for (int c = 0; c < chunk_width; c++) buf[m++] = src[c];
    }
    return m;
  }

  void unpack_forward_comm(int n, int first, double *buf) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      double *dst = rows + (std::size_t) (first + k) * row_width + chunk_offset;
      for (int c = 0; c < chunk_width; c++) dst[c] = buf[m++];
    }
  }

  int pack_reverse_comm(int n, int first, double *buf) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      const double *src = rows + (std::size_t) (first + k) * row_width + chunk_offset;
      for (int c = 0; c < chunk_width; c++) buf[m++] = src[c];
    }
    return m;
  }

  void unpack_reverse_comm(int n, int *list, double *buf) override
  {
    int m = 0;
    for (int k = 0; k < n; k++) {
      double *dst = rows + (std::size_t) list[k] * row_width + chunk_offset;
      for (int c = 0; c < chunk_width; c++) dst[c] += buf[m++];
    }
  }

  void exchange(double *data, int width, bool forward)
  {
    rows = data;
    row_width = width;
    for (chunk_offset = 0; chunk_offset < width; chunk_offset += comm_forward) {
      chunk_width = width - chunk_offset < comm_forward ? width - chunk_offset : comm_forward;
      if (forward)
        comm->forward_comm(this, chunk_width);
      else
        comm->reverse_comm(this, chunk_width);
    }
    rows = nullptr;
  }

 protected:
  std::string name;
  double cutoff = 0.0;
  std::vector<int> pair_i, pair_j;
  std::vector<double> rij, fij, energies;

  void allocate()
  {
    allocated = 1;
    int n = atom->ntypes + 1;
    memory->create(setflag, n, n, "pair:setflag");
    memory->create(cutsq, n, n, "pair:cutsq");
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) setflag[i][j] = 0;
  }
};

}    // namespace LAMMPS_NS

extern "C" {

int mlip_register(const char *name, mlip_setup_fn setup, mlip_compute_fn compute)
{
  if (!name || !setup || !compute) return 1;
  registry()[name] = Callbacks{setup, compute};
  return 0;
}

int mlip_unregister(const char *name) { return registry().erase(name) ? 0 : 1; }

int mlip_forward_comm(void *pair, double *data, int width)
{
  static_cast<PairMLIP *>(pair)->exchange(data, width, true);
  return 0;
}

int mlip_reverse_comm(void *pair, double *data, int width)
{
  static_cast<PairMLIP *>(pair)->exchange(data, width, false);
  return 0;
}

static Pair *mlip_creator(LAMMPS *lmp) { return new PairMLIP(lmp); }

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto reg = (lammpsplugin_regfunc) regfunc;
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.style = "pair";
  plugin.name = "mlip";
  plugin.info = "cartesian-irreps potential evaluated through Python (mlip.lammps)";
  plugin.author = "cartesian-irreps developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &mlip_creator;
  plugin.handle = handle;
  (*reg)(&plugin, lmp);
}
}
