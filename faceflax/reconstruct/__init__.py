"""``faceflax reconstruct``: one photo in, a textured 3D face with a complete UV texture and novel views out.

The coarse-texture stage of MvInvert (sec. 3.1) and the pseudo-UV pipeline of thesis sec. 4.3.1-4.3.2.1:
``crop`` (the face square every stage works in), ``texture`` (face-region mask and UV completion),
``views`` (input-pose and novel-view renders), ``export`` (files), ``pipeline`` (the stages wired).
"""
