import pytest
import torch

from saerand.devices import GpuNotVisible, resolve_device


def test_a_job_given_a_gpu_that_cuda_does_not_see_stops_at_once():
    assert not torch.cuda.is_available()  # the CPU build this suite runs on
    assert resolve_device("auto", environ={}) == "cpu"
    assert resolve_device("cpu", environ={"SLURM_JOB_GPUS": "0"}) == "cpu"  # on the CPU knowingly
    assert resolve_device("auto", environ={"SLURM_GPUS_ON_NODE": "0"}) == "cpu"  # no GPU allocated
    with pytest.raises(GpuNotVisible, match=r"SLURM_STEP_GPUS=3.*CUDA sees none.*set the config's device to cpu"):
        resolve_device("auto", environ={"SLURM_STEP_GPUS": "3", "CUDA_VISIBLE_DEVICES": "3"})
    with pytest.raises(GpuNotVisible, match="device 'cuda:1' configured"):
        resolve_device("cuda:1", environ={})
