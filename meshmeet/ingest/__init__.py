"""Relaying an upstream conference (RTMP, RTSP, HLS, SRT, or an RTMP/RTSP push) into the mesh.

`source.py` checks what the operator names, `pipe.py` frames what crosses between the node and
the ingest worker process, `supervisor.py` decides restarts and status (all sans-IO);
`mesh_encoder.py` turns decoded frames into the presenter's chunks, `worker.py` is the child
process that runs FFmpeg (PyAV). The trio driver is meshmeet/node/ingest_service.py.
"""
