// hqjets: the C++ half of `hqrun datagen jets`.
//
// Why C++: the fastjet wheel ships fastjet-contrib (RecursiveTools, EnergyCorrelator) as a C++
// library without Python bindings, and the energy-correlation functions are O(n^3) loops that
// would dominate the run time in Python.  Why our own ECF loop rather than contrib's
// EnergyCorrelator* classes: each of those classes recomputes its ECFs from scratch, so 13 ratios
// mean ~26 O(n^3) passes per jet; here one pass over the pairs and one over the triples yields
// every ECF that the 13 ratios need.  The contrib classes are still exposed
// (hq_ratios_contrib) so the tests can check that both agree.
//
// Plain C ABI (extern "C", doubles and ints only) so Python loads it with ctypes.

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastjet/ClusterSequence.hh"
#include "fastjet/PseudoJet.hh"
#include "fastjet/contrib/EnergyCorrelator.hh"
#include "fastjet/contrib/ModifiedMassDropTagger.hh"

using fastjet::PseudoJet;

namespace {

const int N_RATIOS = 13;   // C1(b0,b1,b2) C2(b1,b2) D2(b1,b2) D2a1(b1,b2) M2(b1,b2) N2(b1,b2)
const int N_FEATURES = 16;

double safe_div(double num, double den) { return den > 0.0 ? num / den : 0.0; }

// All 13 ECF ratios of one set of constituents, with the pt_R measure of fastjet-contrib
// (energies = pT, angles = sqrt(dy^2 + dphi^2), y the rapidity).
void ratios_once(const std::vector<PseudoJet>& parts, double* out) {
  const size_t n = parts.size();
  double sum_pt = 0.0;
  std::vector<double> pt(n), y(n), phi(n);
  for (size_t i = 0; i < n; ++i) {
    pt[i] = parts[i].pt();
    y[i] = parts[i].rap();
    phi[i] = parts[i].phi();
    sum_pt += pt[i];
  }
  for (int k = 0; k < N_RATIOS; ++k) out[k] = 0.0;
  if (n < 2 || sum_pt <= 0.0) return;  // 0/0 ratios are reported as 0
  std::vector<double> z(n);
  for (size_t i = 0; i < n; ++i) z[i] = pt[i] / sum_pt;
  // pairwise angles, stored once for the triple loop
  std::vector<double> R(n * n, 0.0);
  double e2_b0 = 0.0, e2_b1 = 0.0, e2_b2 = 0.0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      double dphi = std::fabs(phi[i] - phi[j]);
      if (dphi > M_PI) dphi = 2.0 * M_PI - dphi;
      const double dy = y[i] - y[j];
      const double r2 = dy * dy + dphi * dphi;
      const double r = std::sqrt(r2);
      R[i * n + j] = R[j * n + i] = r;
      const double zz = z[i] * z[j];
      e2_b0 += zz;
      e2_b1 += zz * r;
      e2_b2 += zz * r2;
    }
  }
  // normalised 3-point functions: e3 (all three angles), and the generalised ones with the
  // 1 or 2 smallest angles (ECFG(3, v, beta) for v = 1, 2), for beta = 1 and 2.
  double e3_b1 = 0.0, e3_b2 = 0.0, g31_b1 = 0.0, g31_b2 = 0.0, g32_b1 = 0.0, g32_b2 = 0.0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      const double zij = z[i] * z[j];
      const double rij = R[i * n + j];
      for (size_t k = j + 1; k < n; ++k) {
        const double zzz = zij * z[k];
        double a = rij, b = R[i * n + k], c = R[j * n + k];
        if (a > b) std::swap(a, b);
        if (b > c) std::swap(b, c);
        if (a > b) std::swap(a, b);  // now a <= b <= c
        const double ab = a * b, abc = ab * c;
        e3_b1 += zzz * abc;
        e3_b2 += zzz * abc * abc;
        g31_b1 += zzz * a;
        g31_b2 += zzz * a * a;
        g32_b1 += zzz * ab;
        g32_b2 += zzz * ab * ab;
      }
    }
  }
  // With normalised ECFs e1 = 1: C1 = e2, C2 = e3/e2^2, D2 = e3/e2^3,
  // D2^(a,b) = e3^(a) / (e2^(b))^(3a/b), M2 = e3^(1-angle)/e2, N2 = e3^(2-angle)/e2^2.
  out[0] = e2_b0;
  out[1] = e2_b1;
  out[2] = e2_b2;
  out[3] = safe_div(e3_b1, e2_b1 * e2_b1);
  out[4] = safe_div(e3_b2, e2_b2 * e2_b2);
  out[5] = safe_div(e3_b1, e2_b1 * e2_b1 * e2_b1);
  out[6] = safe_div(e3_b2, e2_b2 * e2_b2 * e2_b2);
  out[7] = out[5];                                         // alpha = beta = 1: D2 itself
  out[8] = safe_div(e3_b1, std::pow(e2_b2, 1.5));          // alpha = 1, beta = 2
  out[9] = safe_div(g31_b1, e2_b1);
  out[10] = safe_div(g31_b2, e2_b2);
  out[11] = safe_div(g32_b1, e2_b1 * e2_b1);
  out[12] = safe_div(g32_b2, e2_b2 * e2_b2);
}

// The 16 hls4ml features of one (ungroomed) jet; order = feature_names of the npz layout.
void jet_features(const PseudoJet& jet, double zcut, double* out) {
  fastjet::contrib::ModifiedMassDropTagger mmdt(zcut);
  mmdt.set_grooming_mode(true);
  const PseudoJet groomed = mmdt(jet);
  const std::vector<PseudoJet> all = jet.constituents();
  double sum_pt = 0.0;
  for (const auto& p : all) sum_pt += p.pt();
  double zlogz = 0.0;
  for (const auto& p : all) {
    const double zi = p.pt() / sum_pt;
    if (zi > 0.0) zlogz += zi * std::log(zi);
  }
  out[0] = zlogz;
  std::vector<PseudoJet> gparts;
  if (groomed != 0 && groomed.has_constituents()) gparts = groomed.constituents();
  ratios_once(gparts, out + 1);
  out[14] = (groomed != 0) ? std::max(groomed.m(), 0.0) : 0.0;
  out[15] = static_cast<double>(all.size());
}

// FastJet prints a banner on stdout the first time it clusters; it would interleave with the
// progress bar and with piped output, so it is silenced here (FastJet is cited in docs/datagen.md).
struct QuietBanner {
  QuietBanner() { fastjet::ClusterSequence::set_fastjet_banner_stream(nullptr); }
} quiet_banner;

std::vector<PseudoJet> to_pseudojets(const double* p4, int n) {
  std::vector<PseudoJet> parts;
  parts.reserve(n);
  for (int i = 0; i < n; ++i) {
    PseudoJet p(p4[4 * i], p4[4 * i + 1], p4[4 * i + 2], p4[4 * i + 3]);
    p.set_user_index(i);
    parts.push_back(p);
  }
  return parts;
}

}  // namespace

extern "C" {

int hq_version() { return 1; }

int hq_n_features() { return N_FEATURES; }

// Cluster one event and return the jets that pass the cuts and match a truth object.
//   p4:        n visible final-state particles, (px, py, pz, E) each
//   targets:   m truth objects (parton / boson / top), (px, py, pz, E) each
//   out_kin:   per kept jet (pt, eta, phi, m) of the ungroomed jet
//   out_feat:  per kept jet the 16 features
//   out_match: per kept jet the index of the matched target
// Each target is matched at most once (to the hardest jet within match_dr, rapidity-phi).
// Returns the number of kept jets (<= max_jets).
int hq_event_jets(const double* p4, int n, const double* targets, int m, double R, double pt_min,
                  double pt_max, double abs_eta_max, double match_dr, double zcut, int max_jets,
                  double* out_kin, double* out_feat, int* out_match) {
  if (n <= 0 || m <= 0 || max_jets <= 0) return 0;
  std::vector<PseudoJet> parts = to_pseudojets(p4, n);
  std::vector<PseudoJet> truth = to_pseudojets(targets, m);
  fastjet::JetDefinition jet_def(fastjet::antikt_algorithm, R);
  fastjet::ClusterSequence cs(parts, jet_def);
  std::vector<PseudoJet> jets = fastjet::sorted_by_pt(cs.inclusive_jets(pt_min));
  std::vector<bool> used(m, false);
  int kept = 0;
  for (const auto& jet : jets) {
    if (kept >= max_jets) break;
    if (jet.pt() <= pt_min || jet.pt() >= pt_max || std::fabs(jet.eta()) >= abs_eta_max) continue;
    int best = -1;
    double best_dr = match_dr;
    for (int t = 0; t < m; ++t) {
      if (used[t]) continue;
      const double dr = jet.delta_R(truth[t]);
      if (dr < best_dr) {
        best_dr = dr;
        best = t;
      }
    }
    if (best < 0) continue;
    used[best] = true;
    out_kin[4 * kept] = jet.pt();
    out_kin[4 * kept + 1] = jet.eta();
    out_kin[4 * kept + 2] = jet.phi_std();
    out_kin[4 * kept + 3] = std::max(jet.m(), 0.0);
    jet_features(jet, zcut, out_feat + N_FEATURES * kept);
    out_match[kept] = best;
    ++kept;
  }
  return kept;
}

// Features of the hardest anti-kt jet of the given particles (for tests and notebooks).
// Returns 1 if a jet was found, 0 otherwise.
int hq_leading_jet_features(const double* p4, int n, double R, double zcut, double* out_kin,
                            double* out_feat) {
  if (n <= 0) return 0;
  std::vector<PseudoJet> parts = to_pseudojets(p4, n);
  fastjet::JetDefinition jet_def(fastjet::antikt_algorithm, R);
  fastjet::ClusterSequence cs(parts, jet_def);
  std::vector<PseudoJet> jets = fastjet::sorted_by_pt(cs.inclusive_jets(0.0));
  if (jets.empty()) return 0;
  const PseudoJet& jet = jets[0];
  out_kin[0] = jet.pt();
  out_kin[1] = jet.eta();
  out_kin[2] = jet.phi_std();
  out_kin[3] = std::max(jet.m(), 0.0);
  jet_features(jet, zcut, out_feat);
  return 1;
}

// The 13 ECF ratios of the given particles taken as one jet, no grooming (single-pass loop).
void hq_ratios(const double* p4, int n, double* out) {
  ratios_once(to_pseudojets(p4, n), out);
}

// The same 13 ratios through fastjet-contrib's EnergyCorrelator classes (one ECF pass per
// ratio: slow, kept as the reference the tests compare against).
void hq_ratios_contrib(const double* p4, int n, double* out) {
  using namespace fastjet::contrib;
  const PseudoJet jet = fastjet::join(to_pseudojets(p4, n));
  const EnergyCorrelator::Measure ms = EnergyCorrelator::pt_R;
  out[0] = EnergyCorrelatorC1(0.0, ms)(jet);
  out[1] = EnergyCorrelatorC1(1.0, ms)(jet);
  out[2] = EnergyCorrelatorC1(2.0, ms)(jet);
  out[3] = EnergyCorrelatorC2(1.0, ms)(jet);
  out[4] = EnergyCorrelatorC2(2.0, ms)(jet);
  out[5] = EnergyCorrelatorD2(1.0, ms)(jet);
  out[6] = EnergyCorrelatorD2(2.0, ms)(jet);
  out[7] = EnergyCorrelatorGeneralizedD2(1.0, 1.0, ms)(jet);
  out[8] = EnergyCorrelatorGeneralizedD2(1.0, 2.0, ms)(jet);
  out[9] = EnergyCorrelatorM2(1.0, ms)(jet);
  out[10] = EnergyCorrelatorM2(2.0, ms)(jet);
  out[11] = EnergyCorrelatorN2(1.0, ms)(jet);
  out[12] = EnergyCorrelatorN2(2.0, ms)(jet);
}

}  // extern "C"
