"""GPU discovery through NVML (``pip install tfspawner[nvml]``)."""

from __future__ import annotations

from .gpupool import GPU


class GPUDiscoveryError(RuntimeError):
    pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover() -> list[GPU]:
    """Every GPU the driver reports, by index, with name, memory and UUID.

    MIG devices are not expanded: list MIG ids in ``gpu_pool`` explicitly.
    """
    try:
        import pynvml
    except ImportError:
        raise GPUDiscoveryError(
            "TFSpawner.gpu_pool = 'auto' needs NVML bindings: pip install 'tfspawner[nvml]'"
        ) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise GPUDiscoveryError(
            f"TFSpawner.gpu_pool = 'auto' could not start NVML ({e}); is the NVIDIA driver "
            "installed on the hub's host? List the GPU ids in TFSpawner.gpu_pool instead."
        ) from None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            gpus.append(
                GPU(
                    id=str(index),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory=f"{round(memory / 1024**3)}GB",
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                )
            )
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        raise GPUDiscoveryError("TFSpawner.gpu_pool = 'auto' found no GPU through NVML")
    return gpus
