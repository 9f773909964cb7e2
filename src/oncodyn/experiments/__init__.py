"""Registered experiments; importing this package registers them all."""

from oncodyn.experiments import sipf_focusing  # noqa: F401
from oncodyn.experiments import sipf_convergence  # noqa: F401
from oncodyn.experiments import sipf_blowup  # noqa: F401
from oncodyn.experiments import glioma_simple  # noqa: F401
from oncodyn.experiments import glioma_patient2d  # noqa: F401
from oncodyn.experiments import glioma_3d  # noqa: F401
from oncodyn.experiments import glioma_pipeline  # noqa: F401
from oncodyn.experiments import cpm_sorting  # noqa: F401
from oncodyn.experiments import cpm_regimes  # noqa: F401
from oncodyn.experiments import cpm_neural_data  # noqa: F401
from oncodyn.experiments import cpm_exactness  # noqa: F401
from oncodyn.experiments import cpm_neural_fit  # noqa: F401
from oncodyn.experiments import cpm_digits_data  # noqa: F401
from oncodyn.experiments import cpm_digits  # noqa: F401
from oncodyn.experiments import cpm_bipolar  # noqa: F401
from oncodyn.experiments import cpm_bipolar_data  # noqa: F401
from oncodyn.experiments import cpm_bipolar_oracle  # noqa: F401
from oncodyn.experiments import angio_blobs  # noqa: F401
from oncodyn.experiments import angio_annuli  # noqa: F401
from oncodyn.experiments import angio_runtime  # noqa: F401
from oncodyn.experiments import angio_convergence  # noqa: F401
from oncodyn.experiments import nsipf_train  # noqa: F401
from oncodyn.experiments import deeplagrangian  # noqa: F401
