"""Running the build beyond the local runner: the Dask runner fix (``dask.py``), the GPU worker
image for Dataflow (``Dockerfile``) and how to run on each (``README.md``)."""
