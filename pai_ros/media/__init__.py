"""Writing pictures and videos people look at (MP4, PNG)."""
