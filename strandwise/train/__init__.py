"""strandwise.train"""
