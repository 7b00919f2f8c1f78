"""White-box work beyond one machine, on Ray (``pip install 'tripwire[scale]'``).

* :mod:`~tripwire.scale.ray_runner` - reach a cluster (:func:`cluster`: a local one on loopback
  or an address) and map a per-model job over items as Ray tasks (:class:`RayMap`): one task
  per model with its CPU/GPU request, results in input order, a progress bar as tasks finish,
  a killed worker retried;
* :mod:`~tripwire.scale.data_capture` - activations of a large prompt set with Ray Data
  (``map_batches`` on actors that hold the model) into safetensors shards plus an index.

The jobs themselves live in their rooms (``checks.checkpoint_drift.read_job``,
``organisms.zoo.build_job``) and take a mapper, so nothing below this room imports Ray.
"""

from tripwire.scale.ray_runner import LOCAL, RayMap, Resources, cluster

__all__ = ["LOCAL", "RayMap", "Resources", "cluster"]
